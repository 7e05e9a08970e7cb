/* Fleetdeck log viewer: search (GET /api/v1/logs), older pages by cursor, live tail
 * (logs:HOST topics of /api/v1/live), highlighted matches.
 *
 * Log lines are data: they are inserted with text nodes only (never innerHTML), so a
 * line holding "<script>" shows those characters and runs nothing.
 */
(function () {
  "use strict";

  var F = window.Fleetdeck;
  var MAX_LINES = 2000;
  // The server's tokenizer: runs of letters and digits (console/logs/service.py).
  var WORD = /[\p{L}\p{N}]+\*?/gu;

  var state = { params: null, terms: [], next: null, live: null, hosts: [], listed: new Map() };

  function $(id) { return document.getElementById(id); }

  function termsOf(q) {
    var out = [];
    (q.match(WORD) || []).forEach(function (t) {
      var prefix = t.endsWith("*");
      var word = (prefix ? t.slice(0, -1) : t).toLowerCase();
      if (word && !out.some(function (o) { return o.word === word; })) out.push({ word: word, prefix: prefix });
    });
    return out;
  }

  function escapeRegExp(s) { return s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"); }

  // A regex finding the search words as whole words (prefix words as word starts).
  function matcher(terms) {
    if (!terms.length) return null;
    var parts = terms.map(function (t) {
      return escapeRegExp(t.word) + (t.prefix ? "[\\p{L}\\p{N}]*" : "(?![\\p{L}\\p{N}])");
    });
    return new RegExp("(?<![\\p{L}\\p{N}])(?:" + parts.join("|") + ")", "giu");
  }

  // Append `text` to `parent`, wrapping matches of `re` in <mark>; text nodes only.
  function appendHighlighted(parent, text, re) {
    if (!re) {
      parent.appendChild(document.createTextNode(text));
      return;
    }
    var last = 0;
    re.lastIndex = 0;
    var m;
    while ((m = re.exec(text)) !== null) {
      if (m[0].length === 0) { re.lastIndex++; continue; }
      if (m.index > last) parent.appendChild(document.createTextNode(text.slice(last, m.index)));
      var mark = document.createElement("mark");
      mark.textContent = m[0];
      parent.appendChild(mark);
      last = m.index + m[0].length;
    }
    if (last < text.length) parent.appendChild(document.createTextNode(text.slice(last)));
  }

  function fmtTs(ms) {
    return F.fmtDateTime(ms / 1000, true);
  }

  function lineElement(rec, re, isNew) {
    var li = document.createElement("li");
    li.className = "log-line" + (isNew ? " log-new" : "");
    var ts = F.el("span", "log-meta log-ts", fmtTs(rec.ts));
    ts.title = String(rec.ts);
    var where = F.el("span", "log-meta log-where", rec.host + " " + rec.source);
    where.title = rec.host + " " + rec.source;
    var level = F.el("span", "log-meta log-level log-level-" + (rec.level || "none"), rec.level || "");
    var text = document.createElement("span");
    text.className = "log-text";
    appendHighlighted(text, String(rec.line), re);
    li.appendChild(ts);
    li.appendChild(where);
    li.appendChild(level);
    li.appendChild(text);
    return li;
  }

  function updateCount() {
    var list = $("log-lines");
    list.dataset.count = String(list.children.length);
    $("log-empty").hidden = list.children.length > 0;
  }

  function readForm() {
    var range = Number($("log-range").value);
    var params = {
      q: $("log-q").value.trim(),
      host: $("log-host").value.trim(),
      source: $("log-source").value.trim(),
      level: $("log-level").value,
      limit: 200,
    };
    if (range > 0) params.start = (Date.now() / 1000 - range).toFixed(3);
    return params;
  }

  function search(append) {
    var params = Object.assign({}, state.params);
    if (append) params.cursor = state.next;
    $("log-status").textContent = F.t("Searching…");
    return F.fetchJSON("/api/v1/logs?" + F.query(params)).then(function (body) {
      F.clearError("logs");
      var list = $("log-lines");
      if (!append) {
        list.textContent = "";
        state.listed = new Map();
      }
      var re = matcher(state.terms);
      body.logs.forEach(function (rec) {
        var key = lineKey(rec);
        state.listed.set(key, (state.listed.get(key) || 0) + 1);
        list.appendChild(lineElement(rec, re, false));
      });
      state.next = body.next;
      $("log-more").hidden = !body.next;
      updateCount();
      $("log-status").textContent = F.t("{n} line(s)", { n: list.children.length }) + (body.next ? F.t(", more available") : "");
    }, function (err) {
      F.showError("logs", err.message);
      $("log-status").textContent = "";
    });
  }

  // -- live tail --------------------------------------------------------------------
  function liveMatches(rec) {
    var p = state.params;
    if (p.source) {
      if (p.source.endsWith("*") ? rec.source.indexOf(p.source.slice(0, -1)) !== 0 : rec.source !== p.source) return false;
    }
    if (p.level && p.level.split(",").indexOf(rec.level || "") < 0) return false;
    if (!state.terms.length) return true;
    var words = (String(rec.line).match(/[\p{L}\p{N}]+/gu) || []).map(function (w) { return w.toLowerCase(); });
    return state.terms.every(function (t) {
      return words.some(function (w) { return t.prefix ? w.indexOf(t.word) === 0 : w === t.word; });
    });
  }

  // Live frames carry no record id: a line is known by host, time, source and text,
  // counted, since one program may write the same line twice in a millisecond.
  function lineKey(rec) {
    return [rec.host, rec.ts, rec.source, rec.line].join("\u0000");
  }

  // True (once per listing) for a frame's line that the search answer already listed.
  function alreadyListed(rec) {
    var key = lineKey(rec), n = state.listed.get(key);
    if (!n) return false;
    if (n === 1) state.listed.delete(key);
    else state.listed.set(key, n - 1);
    return true;
  }

  function onFrame(frame) {
    if (!frame.data || !Array.isArray(frame.data.logs)) return;
    var list = $("log-lines");
    var re = matcher(state.terms);
    frame.data.logs.forEach(function (rec) {
      rec.host = frame.data.host;
      // A line committed just before a search ran can come in both its answer and a frame.
      if (!liveMatches(rec) || alreadyListed(rec)) return;
      list.insertBefore(lineElement(rec, re, true), list.firstChild);
    });
    while (list.children.length > MAX_LINES) list.removeChild(list.lastChild);
    updateCount();
  }

  function liveTopics() {
    var hosts = state.params.host ? state.params.host.split(",") : state.hosts;
    return hosts.map(function (h) { return "logs:" + h.trim(); }).filter(function (t) { return t.length > 5; }).slice(0, 256);
  }

  function setLive(on) {
    if (state.live) {
      state.live.stop();
      state.live = null;
    }
    document.body.dataset.logsLive = on ? "on" : "off";
    if (!on) return;
    state.live = new F.LiveSocket({
      topics: liveTopics,
      onFrame: onFrame,
      onState: function (s) { document.body.dataset.logsLiveState = s; },
    });
  }

  function loadHosts() {
    return F.fetchJSON("/api/v1/hosts").then(function (hosts) {
      state.hosts = hosts.map(function (h) { return h.host; });
      var dl = $("log-hosts");
      dl.textContent = "";
      state.hosts.forEach(function (h) {
        var o = document.createElement("option");
        o.value = h;
        dl.appendChild(o);
      });
    }, function (err) { F.showError("hosts", err.message); });
  }

  function run() {
    state.params = readForm();
    state.terms = termsOf(state.params.q);
    var p = search(false);
    if ($("log-live").checked) setLive(true);
    return p;
  }

  document.addEventListener("DOMContentLoaded", function () {
    $("log-search").addEventListener("submit", function (ev) {
      ev.preventDefault();
      run();
    });
    $("log-more").addEventListener("click", function () { search(true); });
    $("log-live").addEventListener("change", function () { setLive($("log-live").checked); });
    loadHosts().then(run);
  });
})();
