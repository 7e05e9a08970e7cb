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

  // A cell of a time that follows the top bar's time-zone switch.
  function whenCell(tr, t) {
    var cell = td(tr, "");
    cell.appendChild(t ? F.timeEl(t) : document.createTextNode("—"));
    return cell;
  }

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
          select.setAttribute("aria-label", F.t("Role of {user}", { user: u.username }));
          ["viewer", "deployer", "admin"].forEach(function (r) {
            var o = F.el("option", "", r); o.value = r; o.selected = r === u.role; select.appendChild(o);
          });
          select.addEventListener("change", function () {
            var role = select.value;
            if (!window.confirm(F.t("Change the role of {user} to {role}?", { user: u.username, role: role }))) { select.value = u.role; return; }
            F.sendJSON("PATCH", url + "/" + encodeURIComponent(u.username), { role: role })
              .then(load, function (err) { select.value = u.role; formError(err.message); });
          });
          roleCell.appendChild(select);
          tr.appendChild(roleCell);
          td(tr, u.apps ? u.apps.join(", ") : F.t("all"));
          td(tr, u.disabled ? F.t("disabled") : F.t("active"));
          whenCell(tr, u.created_at);
          var actions = F.el("td", "actions");
          actions.appendChild(button(u.disabled ? F.t("Enable") : F.t("Disable"), "user-toggle", function () {
            act((u.disabled ? F.t("Enable {user}?", { user: u.username }) : F.t("Disable {user}?", { user: u.username })) + (u.disabled ? "" :
              F.t(" Their sessions and tokens stop working.")), function () {
              return F.sendJSON("PATCH", url + "/" + encodeURIComponent(u.username), { disabled: !u.disabled });
            }, load);
          }));
          actions.appendChild(button(F.t("Reset password"), "user-password", function () {
            var password = window.prompt(F.t("New password for {user}:", { user: u.username }));
            if (!password) return;
            act(F.t("Set a new password for {user}?", { user: u.username }), function () {
              return F.sendJSON("PATCH", url + "/" + encodeURIComponent(u.username), { password: password });
            }, load, function () { notice(F.t("Password of {user} changed.", { user: u.username })); });
          }));
          actions.appendChild(button(F.t("Delete"), "user-delete", function () {
            act(F.t("Delete user {user}? This cannot be undone.", { user: u.username }), function () {
              return F.sendJSON("DELETE", url + "/" + encodeURIComponent(u.username));
            }, load);
          }));
          tr.appendChild(actions);
          return tr;
        });
        F.fillTable(byId("users-table"), rows, F.t("No users."));
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
        notice(F.t("User {user} created.", { user: body.username }));
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
          td(tr, F.term(t.kind));
          td(tr, t.name || t.host || "—");
          td(tr, t.role || "—");
          td(tr, when(t.created_at) + (t.created_by ? F.t(" by {user}", { user: t.created_by }) : ""));
          if (t.expires_at) whenCell(tr, t.expires_at);
          else td(tr, F.t("does not expire"));
          whenCell(tr, t.last_used_at);
          td(tr, t.revoked_at ? F.t("revoked {time}", { time: when(t.revoked_at) }) : F.t("active"));
          var actions = F.el("td", "actions");
          if (!t.revoked_at) {
            actions.appendChild(button(F.t("Revoke"), "token-revoke", function () {
              act(F.t("Revoke token {id} ({name})? It stops working at once.", { id: t.id, name: t.name || t.host || t.kind }),
                  function () { return F.sendJSON("DELETE", url + "/" + t.id); }, load);
            }));
          }
          tr.appendChild(actions);
          return tr;
        });
        F.fillTable(byId("tokens-table"), rows, F.t("No tokens."));
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
          whenCell(tr, s.updated_at);
          td(tr, s.updated_by || "—");
          var actions = F.el("td", "actions");
          actions.appendChild(button(F.t("Delete"), "secret-delete", function () {
            act(F.t("Delete secret {name}? Apps and receivers that use it will fail.", { name: s.name }), function () {
              return F.sendJSON("DELETE", url + "/" + encodeURIComponent(s.name));
            }, load);
          }));
          tr.appendChild(actions);
          return tr;
        });
        F.fillTable(byId("secrets-table"), rows, F.t("No secrets."));
      }, function (err) { F.showError("secrets", err.message); });
    }
    byId("secret-form").addEventListener("submit", function (ev) {
      ev.preventDefault();
      var body = { name: byId("secret-name").value.trim(), kind: byId("secret-kind").value,
                   value: byId("secret-value").value };
      var exists = !!document.querySelector('#secrets-table tr[data-secret="' + CSS.escape(body.name) + '"]');
      if (exists && !window.confirm(F.t("Replace the value of secret {name}?", { name: body.name }))) return;
      formError("");
      F.sendJSON("POST", url, body).then(function () {
        notice(F.t("Secret {name} saved.", { name: body.name }));
        byId("secret-form").reset();
        load();
      }, function (err) { formError(err.message); });
    });
    load();
  }

  // -- settings ---------------------------------------------------------------------------
  function shown(v) {
    if (v === null || v === undefined || v === "") return F.t("(empty)");
    return typeof v === "string" ? v : JSON.stringify(v);
  }

  // Where a setting came from (GET /api/v1/settings: "default", "environment NAME",
  // "command-line flag --name", "FILE line N"), in the page's language.
  function sourceText(source) {
    var m;
    if (source === "default") return F.t("default");
    if ((m = /^environment (\S+)$/.exec(source))) return F.t("environment {variable}", { variable: m[1] });
    if ((m = /^command-line flag (\S+)$/.exec(source))) return F.t("command-line flag {flag}", { flag: m[1] });
    if ((m = /^(.+) line (\d+)$/.exec(source))) return F.t("{file} line {line}", { file: m[1], line: m[2] });
    return source;
  }

  function settingsPage() {
    F.fetchJSON("/api/v1/settings").then(function (doc) {
      byId("settings-file").textContent = doc.file || F.t("none (defaults and environment)");
      var rows = doc.console.map(function (s) {
        var tr = F.el("tr");
        tr.dataset.key = s.key;
        if (s.source !== "default") tr.className = "changed";
        td(tr, s.key);
        td(tr, shown(s.value));
        td(tr, shown(s.default));
        td(tr, sourceText(s.source));
        return tr;
      });
      F.fillTable(byId("settings-table"), rows, F.t("No settings."));
      var sections = doc.sections.map(function (s) {
        var tr = F.el("tr");
        td(tr, s.name + ":");
        td(tr, s.configured ? F.t("yes") : F.t("no"));
        td(tr, sourceText(s.source));
        return tr;
      });
      F.fillTable(byId("sections-table"), sections, F.t("None."));
    }, function (err) { F.showError("settings", err.message); });
  }

  if (byId("users-page")) usersPage();
  if (byId("tokens-page")) tokensPage();
  if (byId("secrets-page")) secretsPage();
  if (byId("settings-page")) settingsPage();
})();
