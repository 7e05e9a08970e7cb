/* Fleetdeck display preferences, loaded in every page's <head> (before the stylesheet
 * paints, so a light-theme user never sees a dark flash): the theme and the time zone
 * times are shown in, both kept in localStorage, plus the navigation menu of small screens.
 *
 * Exposes one global, `FleetdeckPrefs`:
 *   theme()            "light" | "dark": the chosen one, else the browser's prefers-color-scheme
 *   setTheme(t)        "light" | "dark" | null (follow the browser); fires "fleetdeck:theme"
 *   timeZone()         "local" | "utc"
 *   setTimeZone(z)     fires "fleetdeck:timezone"
 *   fmtDateTime(s, ms) Unix seconds -> "2026-11-29 14:05:09" (+ ".123" with ms) in the chosen
 *                      zone, " UTC" appended in UTC; the one time format of every page
 *   parseDateTime(t)   "YYYY-MM-DD HH:MM[:SS]" read in the chosen zone -> Unix seconds, or NaN
 * Elements <time data-ts="unix seconds"> are rewritten in that format on load and on a switch.
 */
(function () {
  "use strict";
  var THEME_KEY = "fleetdeck.theme";
  var TZ_KEY = "fleetdeck.timezone";
  var dark = window.matchMedia ? window.matchMedia("(prefers-color-scheme: dark)") : null;

  function stored(key) {
    try { return window.localStorage.getItem(key); } catch (e) { return null; }  // storage disabled
  }

  function store(key, value) {
    try {
      if (value === null) window.localStorage.removeItem(key);
      else window.localStorage.setItem(key, value);
    } catch (e) { /* storage disabled: the choice lasts for this page only */ }
  }

  var themeChoice = stored(THEME_KEY);
  var zoneChoice = stored(TZ_KEY) === "utc" ? "utc" : "local";

  function theme() {
    if (themeChoice === "light" || themeChoice === "dark") return themeChoice;
    return dark && !dark.matches ? "light" : "dark";
  }

  function applyTheme() {
    document.documentElement.dataset.theme = theme();
    document.dispatchEvent(new CustomEvent("fleetdeck:theme", { detail: theme() }));
  }

  function setTheme(t) {
    themeChoice = t === "light" || t === "dark" ? t : null;
    store(THEME_KEY, themeChoice);
    applyTheme();
    syncControls();
  }

  function timeZone() { return zoneChoice; }

  function setTimeZone(z) {
    zoneChoice = z === "utc" ? "utc" : "local";
    store(TZ_KEY, zoneChoice);
    formatTimes();
    syncControls();
    document.dispatchEvent(new CustomEvent("fleetdeck:timezone", { detail: zoneChoice }));
  }

  function pad(n, w) {
    var s = String(n);
    while (s.length < (w || 2)) s = "0" + s;
    return s;
  }

  function fmtDateTime(unixSeconds, withMs) {
    if (typeof unixSeconds !== "number" || !isFinite(unixSeconds)) return "";
    var d = new Date(unixSeconds * 1000);
    var utc = zoneChoice === "utc";
    var s = (utc ? d.getUTCFullYear() : d.getFullYear()) + "-" + pad((utc ? d.getUTCMonth() : d.getMonth()) + 1)
      + "-" + pad(utc ? d.getUTCDate() : d.getDate()) + " " + pad(utc ? d.getUTCHours() : d.getHours())
      + ":" + pad(utc ? d.getUTCMinutes() : d.getMinutes()) + ":" + pad(utc ? d.getUTCSeconds() : d.getSeconds());
    if (withMs) s += "." + pad(utc ? d.getUTCMilliseconds() : d.getMilliseconds(), 3);
    return utc ? s + " UTC" : s;
  }

  function parseDateTime(text) {
    var m = /^\s*(\d{4})-(\d{2})-(\d{2})[ T](\d{2}):(\d{2})(?::(\d{2}))?\s*(UTC|Z)?\s*$/i.exec(String(text));
    if (!m) return NaN;
    var parts = [Number(m[1]), Number(m[2]) - 1, Number(m[3]), Number(m[4]), Number(m[5]), Number(m[6] || 0)];
    if (parts[1] > 11 || parts[2] < 1 || parts[2] > 31 || parts[3] > 23 || parts[4] > 59 || parts[5] > 59) return NaN;
    var ms = zoneChoice === "utc" || m[7] ? Date.UTC.apply(null, parts)
      : new Date(parts[0], parts[1], parts[2], parts[3], parts[4], parts[5]).getTime();
    return ms / 1000;
  }

  function formatTimes() {
    Array.prototype.forEach.call(document.querySelectorAll("time[data-ts]"), function (node) {
      node.textContent = fmtDateTime(Number(node.dataset.ts));
    });
  }

  // ------------------------------------------------------------ controls in the top bar

  function syncControls() {
    var t = document.getElementById("theme-switch");
    if (t) {
      t.textContent = theme() === "dark" ? "Light theme" : "Dark theme";
      t.setAttribute("aria-pressed", theme() === "light" ? "true" : "false");
      t.dataset.theme = theme();
    }
    var z = document.getElementById("tz-switch");
    if (z) {
      z.textContent = zoneChoice === "utc" ? "UTC" : "Local time";
      z.title = zoneChoice === "utc" ? "Times are shown in UTC; switch to local time" : "Times are shown in local time; switch to UTC";
      z.dataset.zone = zoneChoice;
    }
  }

  function wire() {
    var t = document.getElementById("theme-switch");
    if (t) t.addEventListener("click", function () { setTheme(theme() === "dark" ? "light" : "dark"); });
    var z = document.getElementById("tz-switch");
    if (z) z.addEventListener("click", function () { setTimeZone(zoneChoice === "utc" ? "local" : "utc"); });
    var menu = document.getElementById("nav-toggle");
    var nav = document.querySelector(".topnav");
    if (menu && nav) {
      menu.addEventListener("click", function () {
        var open = !nav.classList.contains("nav-open");
        nav.classList.toggle("nav-open", open);
        menu.setAttribute("aria-expanded", open ? "true" : "false");
      });
    }
    // Mark the current page's link (the longest prefix of the path).
    var best = null;
    Array.prototype.forEach.call(document.querySelectorAll(".nav-links a"), function (a) {
      var href = a.getAttribute("href");
      var path = window.location.pathname;
      if ((path === href || (href !== "/" && path.indexOf(href + "/") === 0) || (href === "/" && path.indexOf("/hosts/") === 0))
          && (!best || href.length > best.getAttribute("href").length)) best = a;
    });
    if (best) best.setAttribute("aria-current", "page");
    syncControls();
    formatTimes();
  }

  applyTheme();
  if (dark && dark.addEventListener) dark.addEventListener("change", function () { if (!themeChoice) applyTheme(); syncControls(); });
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", wire);
  else wire();

  window.FleetdeckPrefs = {
    theme: theme,
    setTheme: setTheme,
    timeZone: timeZone,
    setTimeZone: setTimeZone,
    fmtDateTime: fmtDateTime,
    parseDateTime: parseDateTime,
  };
})();
