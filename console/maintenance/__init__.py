"""Maintenance windows and deploy-aware muting (docs/alerting.md, "Maintenance windows"
and "Deploys").

``windows``: recurring windows (an iCalendar RRULE in an IANA time zone, RFC 5545) and
their scope (Alertmanager label matchers, hosts, apps, environments); ``service``: the
stored windows, their API and the muter with reasons ``window:<name>``; ``deploys``: the
hold of an app's alerts while it deploys and for ``alerting.deploy_settle`` after
(reasons ``deploy:<id>``), and the post-deploy watch that raises ``DeployRegression``.
"""
