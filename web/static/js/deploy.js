/* Deploy detail page: steps and the step log, live over the WebSocket topic deploy:ID.
 * Events carry a per-deploy seq; anything missed while disconnected is fetched with
 * /events?after=SEQ, so the log has no gaps and no duplicates.
 * Server text is data: it is only ever inserted with textContent. */
(function () {
  "use strict";
  var page = document.getElementById("deploy-page");
  if (!page) return;
  var id = page.getAttribute("data-deploy-id");
  var FINAL = { succeeded: 1, failed: 1, rolled_back: 1, cancelled: 1 };
  var CANCELLABLE = { queued: 1, running: 1, awaiting_approval: 1 };
  var lastSeq = 0;
  var finished = false;
  var socket = null;
  var F = window.Fleetdeck;

  function byId(name) { return document.getElementById(name); }

  // Roll back to the version this deploy replaced, after a confirmation (shown to users who may
  // deploy the app; the API checks again). The API's refusal is shown in the dialog.
  var rollbackForm = byId("rollback-form");
  if (rollbackForm) {
    rollbackForm.addEventListener("submit", function (ev) {
      ev.preventDefault();
      var app = rollbackForm.getAttribute("data-app");
      var to = rollbackForm.getAttribute("data-to");
      var reason = byId("rollback-reason").value;
      var body = { to: to, reason: reason };
      var environment = rollbackForm.getAttribute("data-environment");
      if (environment) body.environment = environment;  // an environment's deploy rolls back there
      window.FleetdeckDeploy.confirm({
        title: F.t("Roll back {app}?", { app: app }),
        message: F.t("Roll back {app} to {version}, the version deploy #{id} replaced.", { app: app, version: to, id: id }),
        yes: F.t("Roll back to {version}", { version: to }),
        action: function () {
          return window.FleetdeckDeploy.post("/api/v1/apps/" + encodeURIComponent(app) + "/rollback", body);
        },
        done: function (body) { window.location.href = "/deploys/" + body.id; },
      });
    });
  }

  // Cancel this deploy while it is queued or running (the button shows only then). The page
  // shows the button before its first load of the deploy ends: a click then waits for that load
  // rather than doing nothing.
  var cancelButton = byId("cancel-deploy");
  var current = null;  // the deploy as last loaded
  if (cancelButton) {
    cancelButton.addEventListener("click", function () {
      var ready = current ? Promise.resolve() : loadDeploy();
      ready.then(function () {
        if (!current || !CANCELLABLE[current.state]) return;
        window.FleetdeckDeploy.cancel(current, function () { loadDeploy(); });
      });
    });
  }

  function showError(message) {
    if (message) F.showError("deploy", message);
    else F.clearError("deploy");
  }

  function appendEvent(e) {
    if (e.seq <= lastSeq) return;
    lastSeq = e.seq;
    var li = document.createElement("li");
    li.className = "deploy-event level-" + e.level;
    li.setAttribute("data-seq", String(e.seq));
    li.appendChild(F.timeEl(e.ts));
    if (e.step) {
      var step = document.createElement("span");
      step.className = "deploy-step";
      step.textContent = "[" + e.step + "]";
      li.appendChild(step);
    }
    var text = document.createElement("span");
    text.className = "deploy-message";
    fillMessage(text, e);
    li.appendChild(text);
    byId("deploy-log").appendChild(li);
    // A finished deploy changes no more: its stored events (the catch-up) need no reloads.
    if ((e.kind === "state" || e.kind === "step") && !finished) loadDeploy();
  }

  // A message of the console's own (already in the page's language): the values filled in
  // (names, numbers, another program's output) are marked translate="no", shown as they are.
  function fillMessage(node, item) {
    if (!item.message_parts) {
      node.textContent = item.message;
      return;
    }
    item.message_parts.forEach(function (part) {
      if (!part.value) {
        node.appendChild(document.createTextNode(part.text));
        return;
      }
      var value = document.createElement("span");
      value.className = "deploy-value";
      value.setAttribute("translate", "no");
      value.textContent = part.text;
      node.appendChild(value);
    });
  }

  function renderDeploy(d) {
    current = d;
    if (cancelButton) cancelButton.hidden = !CANCELLABLE[d.state];
    var state = byId("deploy-state");
    state.textContent = F.term(d.state);
    state.className = "badge state-" + d.state;
    byId("deploy-duration").textContent = d.duration_s === null ? (d.started_at ? F.t("running…") : "—") : d.duration_s.toFixed(1) + " s";
    var err = byId("deploy-error");
    err.textContent = "";
    fillMessage(err, { message: d.error || "", message_parts: d.error_parts });
    err.hidden = !d.error;
    var body = byId("steps-table").querySelector("tbody");
    body.textContent = "";
    d.steps.forEach(function (s) {
      var tr = document.createElement("tr");
      [s.name, s.state, s.message].forEach(function (text, i) {
        var td = document.createElement("td");
        if (i === 2) fillMessage(td, s);
        else td.textContent = i === 1 ? F.term(text) : text;
        if (i === 1) td.className = "state state-" + s.state;
        tr.appendChild(td);
      });
      body.appendChild(tr);
    });
    if (FINAL[d.state] && !finished) {
      finished = true;
      byId("live-status").textContent = F.t("finished");
      if (socket) {
        // The last events may still be on their way over the socket stopped here (the
        // state read can overtake them): read the stored ones, so the log ends complete.
        socket.stop();
        catchUp();
      }
    }
  }

  // One read at a time: calls while one is in flight make one more read after it (a burst of
  // step events costs two requests, not one each).
  var loading = null;
  var reloadAfter = false;
  function loadDeploy() {
    if (loading) {
      reloadAfter = true;
      return loading;
    }
    loading = F.fetchJSON("/api/v1/deploys/" + id).then(renderDeploy, function (err) { showError(err.message); })
      .then(function () {
        loading = null;
        if (reloadAfter) {
          reloadAfter = false;
          return loadDeploy();
        }
      });
    return loading;
  }

  function catchUp() {
    return F.fetchJSON("/api/v1/deploys/" + id + "/events?after=" + lastSeq).then(function (page) {
      page.events.forEach(appendEvent);
      showError("");
    }, function (err) { showError(err.message); });
  }

  function connect() {
    if (finished) return;
    socket = new F.LiveSocket({
      topics: function () { return finished ? [] : ["deploy:" + id]; },
      onState: function (state) {
        if (finished) return;
        byId("live-status").textContent = state === "open" ? F.t("live") : F.t("reconnecting…");
        if (state === "open") catchUp();  // whatever happened while the socket was down
      },
      onFrame: function (frame) {
        if (frame.topic === "deploy:" + id && frame.data) {
          if (frame.data.seq > lastSeq + 1) catchUp();  // a gap: fetch what was missed
          else appendEvent(frame.data);
        }
      },
    });
  }

  loadDeploy().then(catchUp).then(connect);
})();
