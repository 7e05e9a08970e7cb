/* Maintenance page: the windows from /api/v1/maintenance/windows, open now or next,
 * refreshed every 30 s. Server text is data: it is only ever inserted with textContent. */
(function () {
  "use strict";
  var page = document.getElementById("maintenance-page");
  if (!page) return;
  var F = window.Fleetdeck;
  var td = F.td;

  function duration(seconds) {
    if (seconds % 3600 === 0) return F.t("{n} h", { n: seconds / 3600 });
    if (seconds % 60 === 0) return F.t("{n} min", { n: seconds / 60 });
    return F.t("{n} s", { n: seconds });
  }

  function scope(w) {
    var parts = [];
    w.matchers.forEach(function (m) { parts.push(m); });
    if (w.hosts.length) parts.push(F.t("hosts: ") + w.hosts.join(", "));
    if (w.apps.length) parts.push(F.t("apps: ") + w.apps.join(", "));
    if (w.environments.length) parts.push(F.t("environments: ") + w.environments.join(", "));
    return parts.join("; ");
  }

  function render(doc) {
    var rows = doc.windows.map(function (w) {
      var tr = F.el("tr");
      tr.dataset.window = w.name;
      td(tr, w.name);
      var state = td(tr, w.active ? F.t("open") : w.next ? F.t("scheduled") : F.t("ended"));
      state.className = w.active ? "state-firing" : "";
      td(tr, w.next ? w.next.start_local + " → " + w.next.end_local : "—");
      td(tr, duration(w.duration));
      td(tr, w.rrule);
      td(tr, w.timezone);
      td(tr, scope(w));
      td(tr, w.comment);
      return tr;
    });
    F.fillTable(document.getElementById("windows-table"), rows, F.t("No maintenance windows."));
  }

  function load() {
    F.fetchJSON("/api/v1/maintenance/windows").then(function (doc) {
      F.clearError("windows");
      render(doc);
    }, function (err) { F.showError("windows", err.message); });
  }

  load();
  setInterval(load, 30000);
})();
