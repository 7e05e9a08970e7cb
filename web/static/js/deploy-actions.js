/* Deploy actions of the deploy pages: deploy a version, roll back to an earlier one, cancel a
 * queued or running deploy. Each goes through a confirmation dialog, then the JSON API
 * (POST /api/v1/apps/APP/deploys, /api/v1/apps/APP/rollback, /api/v1/deploys/ID/cancel) with
 * the session cookie and the X-XSRFToken header (Fleetdeck.sendJSON); the API's refusal is shown
 * in the dialog. The pages include the dialogs (deploy_actions.html) only for users who may
 * deploy the app; the API checks the right again on every call.
 * Server text is data: it is only ever inserted with textContent. */
(function () {
  "use strict";
  var F = window.Fleetdeck;

  function byId(name) { return document.getElementById(name); }

  function showIn(node, message) {
    node.textContent = message || "";
    node.hidden = !message;
  }

  // The confirmation every action passes through: `message`, a `yes` button that runs
  // `action()` (a promise). Resolved: the dialog closes and `done(result)` runs. Rejected: the
  // API's message stays in the dialog and the user may try again or go back.
  function confirmAction(opts) {
    var dialog = byId("confirm-dialog");
    var yes = byId("confirm-yes");
    var no = byId("confirm-no");
    var error = byId("confirm-error");
    byId("confirm-title").textContent = opts.title;
    byId("confirm-message").textContent = opts.message;
    yes.textContent = opts.yes;
    no.textContent = opts.no || F.t("Go back");
    showIn(error, "");
    yes.disabled = no.disabled = false;
    yes.onclick = function () {
      yes.disabled = no.disabled = true;
      showIn(error, "");
      opts.action().then(function (result) {
        dialog.close();
        if (opts.done) opts.done(result);
      }, function (err) {
        showIn(error, err.message);
        yes.disabled = no.disabled = false;
      });
    };
    no.onclick = function () { dialog.close(); };
    dialog.showModal();
    no.focus();  // the safe choice has the focus: Enter alone never starts anything
  }

  function post(url, body) {
    return F.sendJSON("POST", url, body);
  }

  function appUrl(app, what) {
    return "/api/v1/apps/" + encodeURIComponent(app) + "/" + what;
  }

  // Distinct versions of the app's deploys, newest first; `succeededOnly` keeps those that
  // once served (what a rollback may go back to).
  function versions(app, succeededOnly, environment) {
    return F.fetchJSON("/api/v1/deploys?" + F.query({ app: app, limit: 200 })).then(function (page) {
      var seen = {};
      var out = [];
      page.deploys.forEach(function (d) {
        if (succeededOnly && d.state !== "succeeded") return;
        if (environment && d.environment !== environment) return;  // a rollback stays in its environment
        if (seen[d.version]) return;
        seen[d.version] = true;
        out.push(d.version);
      });
      return out;
    });
  }

  var form = null;  // what the deploy dialog does now: {mode, app, current, environment, environments}

  // The deploy dialog: `mode` "deploy" (a version typed or picked from the app's recent ones)
  // or "rollback" (one of the earlier versions that succeeded); its submit asks for confirmation.
  // `environments` (an app with environments: name -> {current}) adds an environment choice;
  // the versions offered and the version serving are then the chosen environment's.
  function openForm(mode, app, current, environments) {
    var names = environments ? Object.keys(environments) : [];
    var select = byId("deploy-environment");
    select.textContent = "";
    names.forEach(function (name) {
      var option = document.createElement("option");
      option.value = option.textContent = name;
      select.appendChild(option);
    });
    byId("deploy-environment-field").hidden = !names.length;
    select.onchange = function () {
      var env = environments[select.value];
      openFormFor(mode, app, (env && env.current && env.current.version) || "", select.value, environments);
    };
    if (names.length) {
      select.onchange();
      return;
    }
    openFormFor(mode, app, current, "", null);
  }

  function openFormFor(mode, app, current, environment, environments) {
    var dialog = byId("deploy-dialog");
    form = { mode: mode, app: app, current: current || "", environment: environment, environments: environments };
    var mine = form;
    var rollback = mode === "rollback";
    byId("deploy-dialog-title").textContent = rollback ? F.t("Roll back {app}", { app: app }) : F.t("Deploy {app}", { app: app });
    byId("deploy-dialog-note").textContent = current ? F.t("Now serving {version}.", { version: current }) : F.t("Nothing deployed yet.");
    byId("deploy-version-field").hidden = rollback;
    byId("rollback-version-field").hidden = !rollback;
    byId("deploy-dialog-submit").textContent = rollback ? F.t("Roll back…") : F.t("Deploy…");
    byId("deploy-version").value = "";
    byId("deploy-reason").value = "";
    showIn(byId("deploy-dialog-error"), "");
    var list = byId(rollback ? "rollback-version" : "deploy-versions");
    list.textContent = "";
    byId("deploy-dialog-submit").disabled = rollback;  // until the earlier versions are known
    if (!dialog.open) dialog.showModal();
    versions(app, rollback, environment).then(function (found) {
      if (form !== mine) return;  // reopened meanwhile (even for the same app and environment: no list twice)
      found.filter(function (v) { return !rollback || v !== current; }).forEach(function (v) {
        var option = document.createElement("option");
        option.value = v;
        option.textContent = v === current ? F.t("{version} (current)", { version: v }) : v;
        list.appendChild(option);
      });
      if (rollback) {
        if (!list.options.length) showIn(byId("deploy-dialog-error"), F.t("No earlier version of {app} succeeded.", { app: app }));
        byId("deploy-dialog-submit").disabled = !list.options.length;
      }
    }, function (err) { showIn(byId("deploy-dialog-error"), err.message); });
  }

  function submitForm(ev) {
    ev.preventDefault();
    if (!form) return;
    var f = form;
    var rollback = f.mode === "rollback";
    var version = (rollback ? byId("rollback-version").value : byId("deploy-version").value).trim();
    var reason = byId("deploy-reason").value;
    if (!version) {
      showIn(byId("deploy-dialog-error"), rollback ? F.t("Pick a version.") : F.t("Type or pick a version."));
      return;
    }
    showIn(byId("deploy-dialog-error"), "");
    var from = f.current ? F.t(" (now {version})", { version: f.current }) : "";
    var where = f.environment ? f.app + " (" + f.environment + ")" : f.app;
    var body = rollback ? { to: version, reason: reason } : { version: version, reason: reason };
    if (f.environment) body.environment = f.environment;
    confirmAction({
      title: rollback ? F.t("Roll back {app}?", { app: where }) : F.t("Deploy {app}?", { app: where }),
      message: (rollback ? F.t("Roll back {app} to {version}", { app: where, version: version })
        : F.t("Deploy {app} to {version}", { app: where, version: version })) + from + ".",
      yes: rollback ? F.t("Roll back to {version}", { version: version }) : F.t("Deploy {version}", { version: version }),
      action: function () { return post(appUrl(f.app, rollback ? "rollback" : "deploys"), body); },
      done: function (deploy) {
        byId("deploy-dialog").close();
        window.location.href = "/deploys/" + deploy.id;
      },
    });
  }

  // Cancel deploy `d` ({id, app, version, state, kind}); `done(deploy)` after the API accepted.
  function cancelDeploy(d, done) {
    confirmAction({
      title: F.t("Cancel {kind} #{id}?", { kind: F.term(d.kind || "deploy"), id: d.id }),
      message: F.t("Cancel {kind} #{id} of {app} to {version} ({state}).", { kind: F.term(d.kind || "deploy"), id: d.id,
                                                                             app: d.app, version: d.version, state: F.term(d.state) })
        + " " + (d.state === "running" ? F.t("It stops and rolls back what it changed.") : F.t("It will not start.")),
      yes: F.t("Cancel #{id}", { id: d.id }),
      no: F.t("Keep it"),
      action: function () { return post("/api/v1/deploys/" + encodeURIComponent(d.id) + "/cancel", {}); },
      done: done,
    });
  }

  if (byId("deploy-dialog")) {
    byId("deploy-dialog-form").addEventListener("submit", submitForm);
    byId("deploy-dialog-close").addEventListener("click", function () { byId("deploy-dialog").close(); });
    byId("deploy-dialog").addEventListener("close", function () { form = null; });
  }

  window.FleetdeckDeploy = {
    confirm: confirmAction,
    openDeploy: function (app, current, environments) { openForm("deploy", app, current, environments); },
    openRollback: function (app, current, environments) { openForm("rollback", app, current, environments); },
    cancel: cancelDeploy,
    post: post,
  };
})();
