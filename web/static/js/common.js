/* Fleetdeck dashboard — shared helpers (fetch, formatting, error banner, live socket).
 *
 * Loaded as a classic script; exposes one global, `Fleetdeck`.
 * Rules: text from the server is data — it is only ever set with textContent.
 */
(function () {
  "use strict";

  // The translation of English text in the page's language (js/prefs.js, console/i18n.py).
  function t(text, params) { return window.FleetdeckPrefs.t(text, params); }

  // ---------------------------------------------------------------- errors

  // One banner (#error) shared by all sources; each source reports under its
  // own key so that a later success clears only its own message.
  var errors = new Map();

  function renderErrors() {
    var el = document.getElementById("error");
    if (!el) return;
    el.textContent = "";
    if (errors.size === 0) {
      el.hidden = true;
      return;
    }
    errors.forEach(function (message) {
      var line = document.createElement("div");
      line.className = "error-line";
      line.textContent = message;
      el.appendChild(line);
    });
    el.hidden = false;
  }

  function showError(key, message) {
    errors.set(key, String(message));
    renderErrors();
  }

  function clearError(key) {
    if (errors.delete(key)) renderErrors();
  }

  // ---------------------------------------------------------------- HTTP

  function ApiError(status, code, message) {
    var err = new Error(message);
    err.name = "ApiError";
    err.status = status;
    err.code = code;
    return err;
  }

  // GET a same-origin JSON URL with the session cookie. Rejects with an Error
  // whose message is readable ("HTTP 400 invalid_param: …").
  // A GET that failed before any answer (the network changed under the browser: Wi-Fi
  // switching, a VPN, interfaces coming and going) is tried again twice, after 0.3 s and
  // 1 s, before the page shows an error; an HTTP error answer is never retried here.
  var RETRY_DELAYS_MS = [300, 1000];

  function fetchRetrying(url, init, attempt) {
    return fetch(url, init).catch(function (err) {
      var aborted = err && err.name === "AbortError";
      if (aborted || attempt >= RETRY_DELAYS_MS.length) throw err;
      return new Promise(function (resolve) { setTimeout(resolve, RETRY_DELAYS_MS[attempt]); })
        .then(function () { return fetchRetrying(url, init, attempt + 1); });
    });
  }

  function fetchJSON(url, opts) {
    opts = opts || {};
    return fetchRetrying(url, {
      method: "GET",
      credentials: "same-origin",
      cache: "no-store",
      headers: { Accept: "application/json" },
      signal: opts.signal,
    }, 0).then(function (resp) {
      var ctype = resp.headers.get("Content-Type") || "";
      var isJSON = ctype.indexOf("json") !== -1;
      if (resp.ok) {
        if (!isJSON) throw ApiError(resp.status, "bad_response", "Expected JSON from " + url + " (got " + (ctype || "nothing") + ")");
        return resp.json();
      }
      var fail = function (code, message) {
        var text = "HTTP " + resp.status + " " + code + ": " + message;
        if (resp.status === 401) text += t(" — your session may have expired; reload the page to log in again.");
        throw ApiError(resp.status, code, text);
      };
      if (!isJSON) return fail("http_error", resp.statusText || "request failed");
      return resp.json().then(
        function (body) {
          var e = (body && body.error) || {};
          return fail(e.code || "http_error", e.message || resp.statusText || "request failed");
        },
        function () { return fail("http_error", resp.statusText || "request failed"); }
      );
    });
  }

  // The XSRF token Tornado set as the _xsrf cookie, sent back as X-XSRFToken on writes.
  function xsrfToken() {
    var m = document.cookie.split("; ").filter(function (c) { return c.indexOf("_xsrf=") === 0; })[0];
    return m ? decodeURIComponent(m.slice(6)) : "";
  }

  // POST/DELETE JSON with the session cookie and the XSRF token. Resolves with the decoded
  // answer (null when empty); rejects with a readable Error. Errors may be the console's
  // {"error": {...}} or Alertmanager's plain JSON string (/alertmanager/api/v2/).
  function sendJSON(method, url, body) {
    var headers = { Accept: "application/json", "X-XSRFToken": xsrfToken() };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    return fetch(url, {
      method: method,
      credentials: "same-origin",
      cache: "no-store",
      headers: headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    }).then(function (resp) {
      return resp.text().then(function (text) {
        var doc = null;
        try { doc = text ? JSON.parse(text) : null; } catch (e) { doc = text; }
        if (resp.ok) return doc;
        var message = typeof doc === "string" ? doc
          : (doc && doc.error && doc.error.message) || resp.statusText || "request failed";
        throw ApiError(resp.status, "http_error", "HTTP " + resp.status + ": " + message);
      });
    });
  }

  function query(params) {
    var parts = [];
    Object.keys(params).forEach(function (k) {
      var v = params[k];
      if (v === undefined || v === null) return;
      parts.push(encodeURIComponent(k) + "=" + encodeURIComponent(v));
    });
    return parts.join("&");
  }

  // ---------------------------------------------------------------- formatting

  function isNum(v) {
    return typeof v === "number" && isFinite(v);
  }

  // Numbers in the page's language (Intl.NumberFormat; en and zh-CN both write 12.5),
  // without thousands separators, as the charts' axes write them.
  var numberFormats = {};

  function trimFixed(v, digits) {
    // 12.50 -> "12.5", 3.00 -> "3"
    if (!window.Intl) return Number(v.toFixed(digits)).toString();
    if (!numberFormats[digits]) {
      numberFormats[digits] = new Intl.NumberFormat(window.FleetdeckPrefs.lang(), { maximumFractionDigits: digits, useGrouping: false });
    }
    return numberFormats[digits].format(Number(v.toFixed(digits)) + 0);  // + 0: -0 is written "0"
  }

  var IEC = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];

  function fmtBytes(v) {
    if (!isNum(v)) return "—";
    var neg = v < 0;
    var a = Math.abs(v);
    var i = 0;
    while (a >= 1024 && i < IEC.length - 1) {
      a /= 1024;
      i++;
    }
    var digits = i === 0 ? 0 : a >= 100 ? 0 : a >= 10 ? 1 : 2;
    return (neg ? "-" : "") + trimFixed(a, digits) + " " + IEC[i];
  }

  function fmtBytesRate(v) {
    return isNum(v) ? fmtBytes(v) + "/s" : "—";
  }

  // ratio 0..1 -> "42.3 %"
  function fmtRatio(v) {
    return isNum(v) ? fmtPercent(v * 100) : "—";
  }

  // already a percentage -> "42.3 %"
  function fmtPercent(v) {
    if (!isNum(v)) return "—";
    var a = Math.abs(v);
    var digits = a === 0 ? 0 : a < 1 ? 2 : a < 10 ? 1 : 0;
    return trimFixed(v, digits) + " %";
  }

  function fmtNumber(v) {
    if (!isNum(v)) return "—";
    var a = Math.abs(v);
    var digits = a === 0 ? 0 : a < 1 ? 3 : a < 10 ? 2 : a < 100 ? 1 : 0;
    return trimFixed(v, digits);
  }

  // seconds ago -> "5 s ago", "3 min ago", "2 h ago", "4 d ago"
  function fmtAgo(unixSeconds, nowMs) {
    if (!isNum(unixSeconds)) return t("never");
    var s = Math.max(0, Math.round((nowMs === undefined ? Date.now() : nowMs) / 1000 - unixSeconds));
    if (s < 120) return t("{n} s ago", { n: s });
    if (s < 7200) return t("{n} min ago", { n: Math.round(s / 60) });
    if (s < 172800) return t("{n} h ago", { n: Math.round(s / 3600) });
    return t("{n} d ago", { n: Math.round(s / 86400) });
  }

  // The one time format of every page ("2026-11-29 14:05:09", " UTC" appended when the
  // top bar's switch says UTC): js/prefs.js, loaded in every page's head.
  function fmtDateTime(unixSeconds, withMs) {
    if (!isNum(unixSeconds)) return "";
    return window.FleetdeckPrefs.fmtDateTime(unixSeconds, withMs);
  }

  // uPlot's tzDate option: chart axes and legends in the zone the switch names.
  function uplotTzDate(ts) {
    var d = new Date(ts * 1000);
    return window.FleetdeckPrefs.timeZone() === "utc" ? uPlot.tzDate(d, "Etc/UTC") : d;
  }

  // A colour of the current theme (a CSS custom property of :root, e.g. "--axis").
  function themeColor(name) {
    return window.getComputedStyle(document.documentElement).getPropertyValue(name).trim();
  }

  // 24-hour clock on a uPlot time axis (uPlot's table format: tick increment,
  // default format, then the formats used when the year/month/day/... rolls over).
  var TIME_AXIS_VALUES = [
    [86400 * 365, "{YYYY}", null, null, null, null, null, null, 1],
    [86400 * 28, "{MMM}", "\n{YYYY}", null, null, null, null, null, 1],
    [86400, "{MM}-{DD}", "\n{YYYY}", null, null, null, null, null, 1],
    [3600, "{HH}:{mm}", "\n{YYYY}-{MM}-{DD}", null, "\n{MM}-{DD}", null, null, null, 1],
    [60, "{HH}:{mm}", "\n{YYYY}-{MM}-{DD}", null, "\n{MM}-{DD}", null, null, null, 1],
    [1, "{HH}:{mm}:{ss}", "\n{YYYY}-{MM}-{DD} {HH}:{mm}", null, "\n{MM}-{DD} {HH}:{mm}", null, "\n{HH}:{mm}", null, 1],
  ];

  // ---------------------------------------------------------------- DOM

  // Create an element with a class and (text-only) content.
  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function setText(id, text) {
    var node = typeof id === "string" ? document.getElementById(id) : id;
    if (node && node.textContent !== String(text)) node.textContent = String(text);
  }

  // Replace a container's children with one chip per label ("key=value").
  function renderLabels(container, labels) {
    var keys = labels && typeof labels === "object" ? Object.keys(labels).sort() : [];
    var sig = JSON.stringify(keys.map(function (k) { return [k, labels[k]]; }));
    if (container.dataset.sig === sig) return;
    container.dataset.sig = sig;
    container.textContent = "";
    keys.forEach(function (k) {
      var chip = el("span", "label-chip", k + "=" + labels[k]);
      chip.title = k + "=" + labels[k];
      container.appendChild(chip);
    });
    container.hidden = keys.length === 0;
  }

  // ---------------------------------------------------------------- tables

  // Append a text cell to a row; returns the cell.
  // The name, in the page's language, of a state, health, kind or strategy the API
  // answers with (its own English word, kept for classes, filters and the CLI); any other
  // value as it is. Each word is spelt out for the catalog extraction (babel-scripts.cfg).
  function term(value) {
    switch (value) {
      case "firing": return t("firing");
      case "pending": return t("pending");
      case "inactive": return t("inactive");
      case "resolved": return t("resolved");
      case "recording": return t("recording");
      case "active": return t("active");
      case "expired": return t("expired");
      case "ok": return t("ok");
      case "err": return t("err");
      case "unknown": return t("unknown");
      case "queued": return t("queued");
      case "running": return t("running");
      case "succeeded": return t("succeeded");
      case "failed": return t("failed");
      case "rolled_back": return t("rolled_back");
      case "cancelled": return t("cancelled");
      case "rejected": return t("rejected");
      case "awaiting_approval": return t("awaiting_approval");
      case "skipped": return t("skipped");
      case "deploy": return t("deploy");
      case "rollback": return t("rollback");
      case "promote": return t("promote");
      case "rolling": return t("rolling");
      case "recreate": return t("recreate");
      case "api": return t("API");
      case "agent": return t("agent");
      case "enrol": return t("enrolment");
      case "sent": return t("sent");
      case "degraded": return t("degraded");
      default: return value;
    }
  }

  // A <time data-ts> of Unix seconds `ts` in the one format and zone of the pages;
  // js/prefs.js rewrites it when the time-zone switch is used.
  function timeEl(ts) {
    var node = el("time", "", fmtDateTime(ts));
    node.dataset.ts = String(ts);
    node.setAttribute("datetime", new Date(ts * 1000).toISOString());
    return node;
  }

  function td(row, text) {
    var cell = el("td", "", text);
    row.appendChild(cell);
    return cell;
  }

  // Append a cell of label chips, leaving out alertname (the row names the alert).
  function alertLabelsCell(row, labels) {
    var cell = el("td");
    var rest = {};
    Object.keys(labels).forEach(function (k) { if (k !== "alertname") rest[k] = labels[k]; });
    renderLabels(cell, rest);
    cell.hidden = false;
    row.appendChild(cell);
  }

  // Replace a table's body with rows, or with one row saying `empty` across all columns.
  function fillTable(table, rows, empty) {
    var body = table.querySelector("tbody");
    body.textContent = "";
    if (!rows.length) {
      var tr = document.createElement("tr");
      td(tr, empty).colSpan = table.querySelectorAll("thead th").length;
      body.appendChild(tr);
    }
    rows.forEach(function (row) { body.appendChild(row); });
  }

  // ---------------------------------------------------------------- live socket

  // LiveSocket({topics: fn -> [topic], onFrame: fn(frame), onState: fn(state)})
  // Connects to /api/v1/live on the page's origin, subscribes, reconnects with
  // exponential backoff (1 s .. 30 s, jittered). body[data-live-state] is
  // "connecting" | "open" | "closed".
  function LiveSocket(opts) {
    this.topicsFn = opts.topics;
    this.onFrame = opts.onFrame || function () {};
    this.onState = opts.onState || function () {};
    this.ws = null;
    this.attempt = 0;
    this.timer = null;
    this.sent = "";
    this.ackTimer = null;
    this.stopped = false;
    this.setState("connecting");
    this.connect();
  }

  LiveSocket.prototype.url = function () {
    var proto = window.location.protocol === "https:" ? "wss:" : "ws:";
    return proto + "//" + window.location.host + "/api/v1/live";
  };

  LiveSocket.prototype.setState = function (state) {
    document.body.dataset.liveState = state;
    this.onState(state);
  };

  LiveSocket.prototype.connect = function () {
    var self = this;
    self.timer = null;
    if (self.stopped) return;
    var ws;
    try {
      ws = new WebSocket(self.url());
    } catch (e) {
      self.scheduleReconnect();
      return;
    }
    self.ws = ws;
    self.sent = "";
    ws.onopen = function () {
      self.attempt = 0;
      clearError("live");
      // "open" means open *and* subscribed: the server acknowledges a
      // subscribe with {"subscribed": [...]}; without topics, or should no
      // acknowledgement come, the socket counts as open after a short wait.
      if (!self.sendSubscribe(true)) self.setState("open");
      else self.ackTimer = window.setTimeout(function () {
        if (self.ws === ws) self.setState("open");
      }, 2000);
    };
    ws.onmessage = function (ev) {
      var frame;
      try {
        frame = JSON.parse(ev.data);
      } catch (e) {
        return;
      }
      if (frame && Array.isArray(frame.subscribed)) {
        window.clearTimeout(self.ackTimer);
        if (document.body.dataset.liveState !== "open") self.setState("open");
        return;
      }
      if (frame && frame.error) {
        showError("live", t("Live updates: ") + (frame.error.code || "error") + ": " + (frame.error.message || ""));
        return;
      }
      if (frame && typeof frame.topic === "string") self.onFrame(frame);
    };
    ws.onclose = function (ev) {
      if (self.ws !== ws) return;
      window.clearTimeout(self.ackTimer);
      self.ws = null;
      self.setState("closed");
      if (ev && ev.code === 4401) {
        // The server closed it because the credential changed (logout, revocation,
        // disable, new role); a reconnect succeeds only if it is still valid.
        showError("live", t("Live updates stopped: your session or token changed. Reload the page or log in again."));
      }
      self.scheduleReconnect();
    };
    ws.onerror = function () {
      /* onclose follows and schedules the reconnect */
    };
  };

  LiveSocket.prototype.scheduleReconnect = function () {
    var self = this;
    if (self.stopped || self.timer) return;
    var base = Math.min(30000, 1000 * Math.pow(2, self.attempt));
    self.attempt = Math.min(self.attempt + 1, 10);
    var delay = base / 2 + Math.random() * (base / 2);
    if (self.attempt >= 3) {
      showError("live", t("Live updates disconnected — retrying in {n} s.", { n: Math.round(delay / 1000) }));
    }
    self.timer = window.setTimeout(function () { self.connect(); }, delay);
  };

  // Send the full topic list (subscribing is idempotent on the server side).
  // Called on open and whenever the set of topics may have changed. Returns
  // true when a subscribe frame was sent.
  LiveSocket.prototype.sendSubscribe = function (force) {
    var ws = this.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) return false;
    var topics = (this.topicsFn() || []).slice().sort();
    var key = JSON.stringify(topics);
    if (!force && key === this.sent) return false;
    this.sent = key;
    if (!topics.length) return false;
    ws.send(JSON.stringify({ subscribe: topics }));
    return true;
  };

  LiveSocket.prototype.stop = function () {
    this.stopped = true;
    if (this.timer) window.clearTimeout(this.timer);
    if (this.ws) this.ws.close();
  };

  window.Fleetdeck = {
    showError: showError,
    t: t,
    clearError: clearError,
    fetchJSON: fetchJSON,
    fetchRetrying: function (url, init) { return fetchRetrying(url, init, 0); },
    sendJSON: sendJSON,
    query: query,
    isNum: isNum,
    fmtBytes: fmtBytes,
    fmtBytesRate: fmtBytesRate,
    fmtRatio: fmtRatio,
    fmtPercent: fmtPercent,
    fmtNumber: fmtNumber,
    fmtAgo: fmtAgo,
    fmtDateTime: fmtDateTime,
    uplotTzDate: uplotTzDate,
    themeColor: themeColor,
    TIME_AXIS_VALUES: TIME_AXIS_VALUES,
    el: el,
    setText: setText,
    renderLabels: renderLabels,
    td: td,
    timeEl: timeEl,
    term: term,
    alertLabelsCell: alertLabelsCell,
    fillTable: fillTable,
    LiveSocket: LiveSocket,
  };
})();
