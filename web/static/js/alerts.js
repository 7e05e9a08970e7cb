/* Alerts page: active alerts (from /prometheus/api/v1/rules, which also carries rule
 * health and refused rule files), alerts resolved in the last 24 h (from
 * /api/v1/alerts/history), and the rules; refreshed every 10 s.
 * Server text is data: it is only ever inserted with textContent. */
(function () {
  "use strict";
  var page = document.getElementById("alerts-page");
  if (!page) return;
  var F = window.Fleetdeck;
  var match = document.getElementById("alert-match");

  // "k=v k2=v2" -> [[k, v], ...]; an alert shows when every pair equals one of its labels.
  function wanted() {
    return match.value.trim().split(/\s+/).filter(Boolean).map(function (pair) {
      var i = pair.indexOf("=");
      return i < 0 ? ["alertname", pair] : [pair.slice(0, i), pair.slice(i + 1)];
    });
  }

  function shown(labels, pairs) {
    return pairs.every(function (p) { return labels[p[0]] === p[1]; });
  }

  var td = F.td, labelsCell = F.alertLabelsCell, fill = F.fillTable;

  function runbook(row, url) {
    var cell = F.el("td");
    // A link only for http(s) URLs; anything else (a path into docs/) is shown as text.
    if (url && /^https?:\/\//.test(url)) {
      var a = F.el("a", "", F.t("runbook"));
      a.href = url;
      a.rel = "noopener noreferrer";
      cell.appendChild(a);
    } else if (url) {
      cell.appendChild(F.el("code", "", url));
    }
    row.appendChild(cell);
  }

  // The rule page: /alerts/rules/GROUP/NAME (each part percent-encoded).
  function ruleURL(group, name) {
    return "/alerts/rules/" + encodeURIComponent(group) + "/" + encodeURIComponent(name);
  }

  // The new-silence form with this alert's labels as matchers: {name="value",...}.
  function silenceURL(labels) {
    var parts = Object.keys(labels).sort().map(function (k) { return k + "=" + JSON.stringify(labels[k]); });
    return "/alerts/silences/new?matchers=" + encodeURIComponent("{" + parts.join(",") + "}");
  }

  // Why an alert's notifications are muted now (the API's mutedBy, KIND:ID): a silence, an
  // inhibition, or another muter (a maintenance window, a deploy hold, a time interval).
  function mutedKind(reasons) {
    if (!reasons || !reasons.length) return null;
    if (reasons.some(function (r) { return r.indexOf("silence:") === 0; })) return "silenced";
    if (reasons.some(function (r) { return r.indexOf("inhibited:") === 0; })) return "inhibited";
    return "muted";
  }

  function render(data, history) {
    var pairs = wanted();
    var active = [];
    data.groups.forEach(function (g) {
      g.rules.forEach(function (r) {
        (r.alerts || []).forEach(function (a) { if (shown(a.labels, pairs)) active.push([g.name, a]); });
      });
    });
    active.sort(function (x, y) {
      var a = x[1], b = y[1];
      return (a.state === b.state ? 0 : a.state === "firing" ? -1 : 1) || (a.activeAt < b.activeAt ? -1 : 1);
    });
    fill(document.getElementById("active-table"), active.map(function (entry) {
      var a = entry[1];
      var tr = F.el("tr", "alert-row alert-" + a.state);
      var link = F.el("a", "rule-link", a.labels.alertname);
      link.href = ruleURL(entry[0], a.labels.alertname);
      td(tr, "").appendChild(link);
      var state = td(tr, F.term(a.state));
      state.className = "state state-" + a.state;
      var muted = mutedKind(a.mutedBy);
      if (muted) {
        var said = { silenced: F.t("silenced"), inhibited: F.t("inhibited"), muted: F.t("muted") }[muted];
        var badge = F.el("span", "badge muted-badge", said);
        badge.title = a.mutedBy.join(", ");  // the reasons as the history names them
        state.appendChild(document.createTextNode(" "));
        state.appendChild(badge);
      }
      labelsCell(tr, a.labels);
      td(tr, F.fmtNumber(Number(a.value))).className = "num";
      var since = Date.parse(a.activeAt) / 1000;
      td(tr, F.fmtAgo(since)).title = F.fmtDateTime(since);
      // Text a rule file wrote, shown as it is in every language (as on the rule page).
      td(tr, a.annotations.summary || "").setAttribute("translate", "no");
      runbook(tr, a.annotations.runbook_url);
      // Silenced already: the silences instead of a new one.
      var silence = muted === "silenced" ? F.el("a", "silences-link", F.t("Silenced"))
        : F.el("a", "btn btn-quiet silence-link", F.t("Silence"));
      silence.href = muted === "silenced" ? "/alerts/silences" : silenceURL(a.labels);
      td(tr, "").appendChild(silence);
      return tr;
    }), F.t("No firing or pending alerts."));
    var resolved = history.transitions.filter(function (t) {
      return t.state === "resolved" && shown(t.labels, pairs);
    });
    fill(document.getElementById("resolved-table"), resolved.map(function (t) {
      var tr = F.el("tr", "alert-row alert-resolved");
      td(tr, t.alertname);
      labelsCell(tr, t.labels);
      td(tr, t.value === null ? "—" : F.fmtNumber(t.value)).className = "num";
      td(tr, F.fmtAgo(t.ts)).title = F.fmtDateTime(t.ts);
      return tr;
    }), F.t("Nothing resolved in the last 24 hours."));
    var rules = [];
    data.groups.forEach(function (g) {
      g.rules.forEach(function (r) {
        var tr = F.el("tr");
        td(tr, g.name);
        var link = F.el("a", "rule-link", r.name);
        link.href = ruleURL(g.name, r.name);
        td(tr, "").appendChild(link);
        var kind = r.type === "recording" ? "recording" : r.state;
        td(tr, F.term(kind)).className = "state state-" + kind;
        var health = td(tr, F.term(r.health) + (r.lastError ? ": " + r.lastError : ""));
        health.className = "health-" + r.health;
        td(tr, r.query).className = "mono";
        td(tr, r.duration ? r.duration + " s" : "—").className = "num";
        rules.push(tr);
      });
    });
    fill(document.getElementById("rules-table"), rules, F.t("No rules loaded."));
    var errors = document.getElementById("rule-errors");
    errors.textContent = "";
    (data.fileErrors || []).forEach(function (e) {
      errors.appendChild(F.el("div", "error-line", F.t("Rule file refused (its previous rules keep running): ") + e.error));
    });
    errors.hidden = !(data.fileErrors || []).length;
  }

  function refresh() {
    var since = Date.now() / 1000 - 86400;
    Promise.all([F.fetchJSON("/prometheus/api/v1/rules"),
                 F.fetchJSON("/api/v1/alerts/history?limit=1000&since=" + since.toFixed(0))]).then(function (res) {
      render(res[0].data, res[1]);
      F.clearError("alerts");
    }, function (err) { F.showError("alerts", err.message); });
  }

  match.addEventListener("input", refresh);
  document.getElementById("alert-filter").addEventListener("submit", function (e) { e.preventDefault(); refresh(); });
  refresh();
  window.setInterval(refresh, 10000);
})();
