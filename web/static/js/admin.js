/* Admin pages: users, tokens, secrets (write through the admin JSON API, each change after a
 * confirmation) and settings (read-only). Server text is data: only ever inserted with
 * textContent. */
(function () {
  "use strict";
  var F = window.Fleetdeck;
  var td = F.td;

  function byId(id) { return document.getElementById(id); }

  function formError(message) {
    var box = byId("admin-form-error");
    box.textContent = message || "";
    box.hidden = !message;
  }

  function notice(message) {
    var box = byId("admin-message");
    if (!box) return;
    box.textContent = message || "";
    box.hidden = !message;
  }

  function when(t) { return t ? F.fmtDateTime(t) : "—"; }

  function appsList(text) {
    var apps = text.split(",").map(function (a) { return a.trim(); }).filter(Boolean);
    return apps.length ? apps : null;
  }

  function button(label, className, onClick) {
    var b = F.el("button", "btn btn-quiet " + (className || ""), label);
    b.type = "button";
    b.addEventListener("click", onClick);
    return b;
  }

  // Runs ``send`` after the user confirmed ``question``; reloads the table on success.
  function act(question, send, reload, done) {
    if (!window.confirm(question)) return;
    formError("");
    send().then(function (answer) {
      if (done) done(answer);
      reload();
    }, function (err) { formError(err.message); });
  }

  // -- users ------------------------------------------------------------------------------
  function usersPage() {
    var url = "/api/v1/users";
    function load() {
      F.fetchJSON(url).then(function (doc) {
        F.clearError("users");
        var rows = doc.users.map(function (u) {
          var tr = F.el("tr");
          tr.dataset.user = u.username;
          td(tr, u.username);
          var roleCell = F.el("td");
          var select = F.el("select", "user-role-select");
          select.setAttribute("aria-label", "Role of " + u.username);
          ["viewer", "deployer", "admin"].forEach(function (r) {
            var o = F.el("option", "", r); o.value = r; o.selected = r === u.role; select.appendChild(o);
          });
          select.addEventListener("change", function () {
            var role = select.value;
            if (!window.confirm("Change the role of " + u.username + " to " + role + "?")) { select.value = u.role; return; }
            F.sendJSON("PATCH", url + "/" + encodeURIComponent(u.username), { role: role })
              .then(load, function (err) { select.value = u.role; formError(err.message); });
          });
          roleCell.appendChild(select);
          tr.appendChild(roleCell);
          td(tr, u.apps ? u.apps.join(", ") : "all");
          td(tr, u.disabled ? "disabled" : "active");
          td(tr, when(u.created_at));
          var actions = F.el("td", "actions");
          actions.appendChild(button(u.disabled ? "Enable" : "Disable", "user-toggle", function () {
            act((u.disabled ? "Enable " : "Disable ") + u.username + "?" + (u.disabled ? "" :
              " Their sessions and tokens stop working."), function () {
              return F.sendJSON("PATCH", url + "/" + encodeURIComponent(u.username), { disabled: !u.disabled });
            }, load);
          }));
          actions.appendChild(button("Reset password", "user-password", function () {
            var password = window.prompt("New password for " + u.username + ":");
            if (!password) return;
            act("Set a new password for " + u.username + "?", function () {
              return F.sendJSON("PATCH", url + "/" + encodeURIComponent(u.username), { password: password });
            }, load, function () { notice("Password of " + u.username + " changed."); });
          }));
          actions.appendChild(button("Delete", "user-delete", function () {
            act("Delete user " + u.username + "? This cannot be undone.", function () {
              return F.sendJSON("DELETE", url + "/" + encodeURIComponent(u.username));
            }, load);
          }));
          tr.appendChild(actions);
          return tr;
        });
        F.fillTable(byId("users-table"), rows, "No users.");
      }, function (err) { F.showError("users", err.message); });
    }
    byId("user-form").addEventListener("submit", function (ev) {
      ev.preventDefault();
      var body = { username: byId("user-name").value.trim(), password: byId("user-password").value,
                   role: byId("user-role").value };
      var apps = appsList(byId("user-apps").value);
      if (apps) body.apps = apps;
      formError("");
      F.sendJSON("POST", url, body).then(function () {
        notice("User " + body.username + " created.");
        byId("user-form").reset();
        load();
      }, function (err) { formError(err.message); });
    });
    load();
  }

  // -- tokens -----------------------------------------------------------------------------
  function tokensPage() {
    var url = "/api/v1/tokens";
    var kind = byId("token-kind");
    function showFields() {
      document.querySelectorAll("#token-form [data-kinds]").forEach(function (label) {
        label.hidden = label.dataset.kinds.split(" ").indexOf(kind.value) < 0;
      });
    }
    function load() {
      var q = byId("show-revoked").checked ? "?include_revoked=true" : "";
      F.fetchJSON(url + q).then(function (doc) {
        F.clearError("tokens");
        var rows = doc.tokens.map(function (t) {
          var tr = F.el("tr");
          tr.dataset.token = String(t.id);
          td(tr, String(t.id));
          td(tr, t.kind);
          td(tr, t.name || t.host || "—");
          td(tr, t.role || "—");
          td(tr, when(t.created_at) + (t.created_by ? " by " + t.created_by : ""));
          td(tr, t.expires_at ? when(t.expires_at) : "never");
          td(tr, when(t.last_used_at));
          td(tr, t.revoked_at ? "revoked " + when(t.revoked_at) : "active");
          var actions = F.el("td", "actions");
          if (!t.revoked_at) {
            actions.appendChild(button("Revoke", "token-revoke", function () {
              act("Revoke token " + t.id + " (" + (t.name || t.host || t.kind) + ")? It stops working at once.",
                  function () { return F.sendJSON("DELETE", url + "/" + t.id); }, load);
            }));
          }
          tr.appendChild(actions);
          return tr;
        });
        F.fillTable(byId("tokens-table"), rows, "No tokens.");
      }, function (err) { F.showError("tokens", err.message); });
    }
    kind.addEventListener("change", showFields);
    byId("show-revoked").addEventListener("change", load);
    byId("token-form").addEventListener("submit", function (ev) {
      ev.preventDefault();
      var body = { kind: kind.value };
      var days = parseFloat(byId("token-days").value);
      if (kind.value === "api") {
        body.name = byId("token-name").value.trim();
        body.role = byId("token-role").value;
        var apps = appsList(byId("token-apps").value);
        if (apps) body.apps = apps;
        if (days > 0) body.expires_in = days * 86400;
      } else {
        var host = byId("token-host").value.trim();
        if (host) body.host = host;
        if (kind.value === "enrol" && days > 0) body.expires_in = days * 86400;
      }
      formError("");
      F.sendJSON("POST", url, body).then(function (created) {
        byId("token-value").textContent = created.token;
        byId("token-secret").hidden = false;
        byId("token-form").reset();
        showFields();
        load();
      }, function (err) { formError(err.message); });
    });
    showFields();
    load();
  }

  // -- secrets ----------------------------------------------------------------------------
  function secretsPage() {
    var url = "/api/v1/secrets";
    function load() {
      F.fetchJSON(url).then(function (doc) {
        F.clearError("secrets");
        var rows = doc.secrets.map(function (s) {
          var tr = F.el("tr");
          tr.dataset.secret = s.name;
          td(tr, s.name);
          td(tr, s.kind);
          td(tr, when(s.updated_at));
          td(tr, s.updated_by || "—");
          var actions = F.el("td", "actions");
          actions.appendChild(button("Delete", "secret-delete", function () {
            act("Delete secret " + s.name + "? Apps and receivers that use it will fail.", function () {
              return F.sendJSON("DELETE", url + "/" + encodeURIComponent(s.name));
            }, load);
          }));
          tr.appendChild(actions);
          return tr;
        });
        F.fillTable(byId("secrets-table"), rows, "No secrets.");
      }, function (err) { F.showError("secrets", err.message); });
    }
    byId("secret-form").addEventListener("submit", function (ev) {
      ev.preventDefault();
      var body = { name: byId("secret-name").value.trim(), kind: byId("secret-kind").value,
                   value: byId("secret-value").value };
      var exists = !!document.querySelector('#secrets-table tr[data-secret="' + CSS.escape(body.name) + '"]');
      if (exists && !window.confirm("Replace the value of secret " + body.name + "?")) return;
      formError("");
      F.sendJSON("POST", url, body).then(function () {
        notice("Secret " + body.name + " saved.");
        byId("secret-form").reset();
        load();
      }, function (err) { formError(err.message); });
    });
    load();
  }

  // -- settings ---------------------------------------------------------------------------
  function shown(v) {
    if (v === null || v === undefined || v === "") return "(empty)";
    return typeof v === "string" ? v : JSON.stringify(v);
  }

  function settingsPage() {
    F.fetchJSON("/api/v1/settings").then(function (doc) {
      byId("settings-file").textContent = doc.file || "none (defaults and environment)";
      var rows = doc.console.map(function (s) {
        var tr = F.el("tr");
        tr.dataset.key = s.key;
        if (s.source !== "default") tr.className = "changed";
        td(tr, s.key);
        td(tr, shown(s.value));
        td(tr, shown(s.default));
        td(tr, s.source);
        return tr;
      });
      F.fillTable(byId("settings-table"), rows, "No settings.");
      var sections = doc.sections.map(function (s) {
        var tr = F.el("tr");
        td(tr, s.name + ":");
        td(tr, s.configured ? "yes" : "no");
        td(tr, s.source);
        return tr;
      });
      F.fillTable(byId("sections-table"), sections, "None.");
    }, function (err) { F.showError("settings", err.message); });
  }

  if (byId("users-page")) usersPage();
  if (byId("tokens-page")) tokensPage();
  if (byId("secrets-page")) secretsPage();
  if (byId("settings-page")) settingsPage();
})();
