/* Deploys page: the apps and the deploy history, refreshed every 5 s.
 * Server text is data: it is only ever inserted with textContent. */
(function () {
  "use strict";
  var page = document.getElementById("deploys-page");
  if (!page) return;
  var app = page.getAttribute("data-app") || "";

  var F = window.Fleetdeck;

  function showError(message) {
    if (message) F.showError("deploys", message);
    else F.clearError("deploys");
  }


  function cell(row, text, href) {
    var td = document.createElement("td");
    if (href) {
      var a = document.createElement("a");
      a.href = href;
      a.textContent = text;
      td.appendChild(a);
    } else {
      td.textContent = text;
    }
    row.appendChild(td);
    return td;
  }

  function when(ts) {
    return ts ? new Date(ts * 1000).toLocaleString() : "—";
  }

  function duration(s) {
    if (s === null || s === undefined) return "—";
    return s < 120 ? s.toFixed(1) + " s" : (s / 60).toFixed(1) + " min";
  }

  function fill(table, rows, empty) {
    var body = table.querySelector("tbody");
    body.textContent = "";
    if (!rows.length) {
      var tr = document.createElement("tr");
      cell(tr, empty).colSpan = table.querySelectorAll("thead th").length;
      body.appendChild(tr);
    }
    rows.forEach(function (tr) { body.appendChild(tr); });
  }

  function renderApps(apps) {
    fill(document.getElementById("apps-table"), apps.map(function (a) {
      var tr = document.createElement("tr");
      cell(tr, a.name, "/deploys?app=" + encodeURIComponent(a.name));
      cell(tr, a.target.image);
      cell(tr, String(a.target.replicas));
      cell(tr, a.strategy.type);
      cell(tr, a.current ? a.current.version : "—");
      if (a.active) cell(tr, "#" + a.active.id + " " + a.active.version + " " + a.active.state, "/deploys/" + a.active.id);
      else cell(tr, "—");
      return tr;
    }), "No apps configured (see docs/deploys.md).");
  }

  function renderDeploys(result) {
    fill(document.getElementById("deploys-table"), result.deploys.map(function (d) {
      var tr = document.createElement("tr");
      cell(tr, "#" + d.id, "/deploys/" + d.id);
      cell(tr, d.app);
      cell(tr, d.version);
      cell(tr, d.kind);
      var state = cell(tr, d.state);
      state.className = "state state-" + d.state;
      cell(tr, d.requested_by);
      cell(tr, when(d.created_at));
      cell(tr, duration(d.duration_s));
      cell(tr, d.reason || "");
      return tr;
    }), "No deploys yet.");
  }

  function refresh() {
    var q = "limit=100" + (app ? "&app=" + encodeURIComponent(app) : "");
    Promise.all([F.fetchJSON("/api/v1/apps"), F.fetchJSON("/api/v1/deploys?" + q)]).then(function (res) {
      renderApps(res[0]);
      renderDeploys(res[1]);
      showError("");
    }, function (err) { showError(err.message); });
  }

  refresh();
  window.setInterval(refresh, 5000);
})();
