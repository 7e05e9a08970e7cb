/* Deploys page: the apps and the deploy history, refreshed every 5 s, with the actions
 * (deploy-actions.js) on the rows of the apps this user may deploy.
 * Server text is data: it is only ever inserted with textContent. */
(function () {
  "use strict";
  var page = document.getElementById("deploys-page");
  if (!page) return;
  var app = page.getAttribute("data-app") || "";
  var deployable = JSON.parse(page.getAttribute("data-deployable") || "[]");  // apps this user may deploy
  var shown = "";  // what the tables show, so an unchanged refresh leaves them (and their buttons) alone

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

  function when(td, ts) {
    td.textContent = "";
    td.appendChild(ts ? F.timeEl(ts) : document.createTextNode("—"));
    return td;
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
    // Each cell names its column, for the stacked layout of narrow screens (deploys.css).
    var heads = Array.prototype.map.call(table.querySelectorAll("thead th"), function (th) { return th.textContent; });
    rows.forEach(function (tr) {
      Array.prototype.forEach.call(tr.children, function (td, i) { td.setAttribute("data-label", heads[i] || ""); });
      body.appendChild(tr);
    });
  }

  // Where the app runs and how a deploy proceeds, in its driver's terms (the API's target
  // summary differs per driver: docs/deploys.md; `fleetdeck apps` shows the same).
  function describe(a) {
    var t = a.target || {};
    if (a.driver === "ssh") {
      var b = t.batches || {};
      var how = b.type === "fixed" ? F.t("batches of {n}", { n: b.size }) : b.type === "percent" ? F.t("batches of {n}", { n: b.size + "%" }) : F.t("serial");
      return { where: F.t("{path} on {hosts}", { path: t.deploy_to || "?", hosts: (t.hosts || []).join(", ") }), how: how };
    }
    if (a.driver === "kubernetes") {
      var ns = t.namespace || "";
      var where = ns && ns.charAt(0) !== "(" ? ns + "/" + t.deployment : F.t("{deployment} (context namespace)", { deployment: t.deployment });
      return { where: where + " (" + t.image + ")", how: F.t("the Deployment's rollout") };
    }
    return { where: (t.image || "?") + " (" + F.t("{n} replicas", { n: t.replicas }) + ")", how: F.term((a.strategy || {}).type) || "—" };
  }

  function button(label, className, onClick) {
    var b = document.createElement("button");
    b.type = "button";
    b.className = "btn " + className;
    b.textContent = label;
    b.addEventListener("click", onClick);
    return b;
  }

  function actions(td, a) {
    var D = window.FleetdeckDeploy;
    var current = a.current ? a.current.version : "";
    var envs = a.environments && Object.keys(a.environments).length ? a.environments : null;
    var served = envs ? Object.keys(envs).some(function (n) { return envs[n].current; }) : !!current;
    td.className = "deploy-row-actions";
    td.appendChild(button(F.t("Deploy…"), "deploy-app", function () { D.openDeploy(a.name, current, envs); }));
    if (served) {
      td.appendChild(button(F.t("Roll back…"), "rollback-app", function () { D.openRollback(a.name, current, envs); }));
    }
    if (a.active) {
      td.appendChild(button(F.t("Cancel #{id}…", { id: a.active.id }), "cancel-active", function () {
        D.cancel(Object.assign({ app: a.name }, a.active), function () { refresh(true); });
      }));
    }
  }

  function renderApps(apps) {
    fill(document.getElementById("apps-table"), apps.map(function (a) {
      var tr = document.createElement("tr");
      var d = describe(a);
      tr.setAttribute("data-app", a.name);
      tr.setAttribute("data-driver", a.driver);
      cell(tr, a.name, "/deploys?app=" + encodeURIComponent(a.name));
      cell(tr, a.driver);
      cell(tr, d.where).className = "app-target";
      cell(tr, d.how);
      cell(tr, a.current ? a.current.version : "—");
      if (a.active) cell(tr, "#" + a.active.id + " " + a.active.version + " " + F.term(a.active.state), "/deploys/" + a.active.id);
      else cell(tr, "—");
      if (deployable.length) {
        var td = cell(tr, "");
        if (deployable.indexOf(a.name) !== -1) actions(td, a);
      }
      return tr;
    }), F.t("No apps configured (see docs/deploys.md)."));
  }

  function renderDeploys(result) {
    fill(document.getElementById("deploys-table"), result.deploys.map(function (d) {
      var tr = document.createElement("tr");
      cell(tr, "#" + d.id, "/deploys/" + d.id).className = "nowrap";
      cell(tr, d.app);
      cell(tr, d.version);
      cell(tr, F.term(d.kind)).className = "nowrap";
      cell(tr, F.term(d.state)).className = "state nowrap state-" + d.state;
      cell(tr, d.requested_by);
      when(cell(tr, ""), d.created_at);
      cell(tr, duration(d.duration_s)).className = "nowrap";
      cell(tr, d.reason || "");
      return tr;
    }), F.t("No deploys yet."));
  }

  function refresh(force) {
    var q = "limit=100" + (app ? "&app=" + encodeURIComponent(app) : "");
    Promise.all([F.fetchJSON("/api/v1/apps"), F.fetchJSON("/api/v1/deploys?" + q)]).then(function (res) {
      var now = JSON.stringify(res);
      if (force === true || now !== shown) {
        shown = now;
        renderApps(res[0]);
        renderDeploys(res[1]);
      }
      page.setAttribute("data-loaded", "true");
      showError("");
    }, function (err) { showError(err.message); });
  }

  refresh();
  window.setInterval(refresh, 5000);
})();
