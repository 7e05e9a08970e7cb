"""Dashboard pages (templates in web/templates) and the browser login."""
