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
 *   parseDateTime(t)   "YYYY-MM-DD HH:MM[:SS]" (or with "/") read in the chosen zone -> Unix seconds, or NaN
 *   lang()             the page's language, a BCP 47 tag ("en", "zh-CN": <html lang>, chosen by the console)
 *   setLang(l)         the top bar's language switch: a cookie the console reads, kept for the
 *                      logged-in user too (PATCH /api/v1/me), then a reload
 *   t(text, params)    the translation of English `text` from the page's catalog (console/i18n.py:
 *                      <script type="application/json" id="fleetdeck-i18n">), `text` itself when
 *                      missing; "{name}" is replaced by params.name
 * Elements <time data-ts="unix seconds"> are rewritten in that format on load and on a switch.
 * In a language other than English, dates and times are written by Intl.DateTimeFormat with
 * the page's language (zh-CN: "2026/11/29 14:05:09").
 */
(function () {
  "use strict";
  var THEME_KEY = "fleetdeck.theme";
  var TZ_KEY = "fleetdeck.timezone";
  var LANG_COOKIE = "fleetdeck_lang";  // console/i18n.py
  var lang = document.documentElement.lang || "en";
  var catalog = {};
  try {
    var block = document.getElementById("fleetdeck-i18n");
    if (block) catalog = JSON.parse(block.textContent) || {};
  } catch (e) { catalog = {}; }  // a broken catalog: English rather than no page

  function t(text, params) {
    var s = Object.prototype.hasOwnProperty.call(catalog, text) ? catalog[text] : text;
    if (params) {
      s = s.replace(/\{(\w+)\}/g, function (m, k) {
        return Object.prototype.hasOwnProperty.call(params, k) ? String(params[k]) : m;
      });
    }
    return s;
  }

  function setLang(l) {
    // A year-long cookie, read by the console on every page; the page is rendered again in it.
    document.cookie = LANG_COOKIE + "=" + encodeURIComponent(l) + "; path=/; max-age=31536000; samesite=lax";
    // Logged in: kept for the user too (PATCH /api/v1/me), so their next login, in any
    // browser, is in it. The page reloads whether or not that was kept.
    var reload = function () { window.location.reload(); };
    if (document.getElementById("nav-username") && window.Fleetdeck) {
      window.Fleetdeck.sendJSON("PATCH", "/api/v1/me", { language: l }).then(reload, reload);
    } else {
      reload();
    }
  }

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

  var intlFormats = {};

  function intlDateTime(d, utc, withMs) {
    var key = (utc ? "u" : "l") + (withMs ? "m" : "");
    if (!intlFormats[key]) {
      var opts = { year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit",
                   second: "2-digit", hourCycle: "h23" };
      if (utc) opts.timeZone = "UTC";
      if (withMs) opts.fractionalSecondDigits = 3;
      intlFormats[key] = new Intl.DateTimeFormat(lang, opts);
    }
    return intlFormats[key].format(d);
  }

  function fmtDateTime(unixSeconds, withMs) {
    if (typeof unixSeconds !== "number" || !isFinite(unixSeconds)) return "";
    var d = new Date(unixSeconds * 1000);
    var utc = zoneChoice === "utc";
    if (lang !== "en" && window.Intl) return intlDateTime(d, utc, withMs) + (utc ? " UTC" : "");
    var s = (utc ? d.getUTCFullYear() : d.getFullYear()) + "-" + pad((utc ? d.getUTCMonth() : d.getMonth()) + 1)
      + "-" + pad(utc ? d.getUTCDate() : d.getDate()) + " " + pad(utc ? d.getUTCHours() : d.getHours())
      + ":" + pad(utc ? d.getUTCMinutes() : d.getMinutes()) + ":" + pad(utc ? d.getUTCSeconds() : d.getSeconds());
    if (withMs) s += "." + pad(utc ? d.getUTCMilliseconds() : d.getMilliseconds(), 3);
    return utc ? s + " UTC" : s;
  }

  function parseDateTime(text) {
    var m = /^\s*(\d{4})[-/](\d{2})[-/](\d{2})[ T](\d{2}):(\d{2})(?::(\d{2}))?\s*(UTC|Z)?\s*$/i.exec(String(text));
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
    var themeBtn = document.getElementById("theme-switch");
    if (themeBtn) {
      themeBtn.textContent = theme() === "dark" ? t("Light theme") : t("Dark theme");
      themeBtn.setAttribute("aria-pressed", theme() === "light" ? "true" : "false");
      themeBtn.dataset.theme = theme();
    }
    var z = document.getElementById("tz-switch");
    if (z) {
      z.textContent = zoneChoice === "utc" ? "UTC" : t("Local time");
      z.title = zoneChoice === "utc" ? t("Times are shown in UTC; switch to local time") : t("Times are shown in local time; switch to UTC");
      z.dataset.zone = zoneChoice;
    }
  }

  function wire() {
    var themeBtn = document.getElementById("theme-switch");
    if (themeBtn) themeBtn.addEventListener("click", function () { setTheme(theme() === "dark" ? "light" : "dark"); });
    var z = document.getElementById("tz-switch");
    if (z) z.addEventListener("click", function () { setTimeZone(zoneChoice === "utc" ? "local" : "utc"); });
    var l = document.getElementById("lang-switch");
    if (l) l.addEventListener("click", function () { setLang(l.dataset.lang); });
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
    lang: function () { return lang; },
    setLang: setLang,
    t: t,
  };
})();
