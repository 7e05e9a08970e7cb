/* Silences pages: the list (/alerts/silences, from GET /alertmanager/api/v2/silences,
 * with Expire buttons) and the form (/alerts/silences/new, POST
 * /alertmanager/api/v2/silences). Server text is data: only inserted with textContent. */
(function () {
  "use strict";
  var F = window.Fleetdeck;
  var API = "/alertmanager/api/v2";

  function matcherText(m) {
    var op = m.isEqual === false ? (m.isRegex ? "!~" : "!=") : (m.isRegex ? "=~" : "=");
    return m.name + op + JSON.stringify(m.value);
  }

  // ---------------------------------------------------------------- list
  var list = document.getElementById("silences-page");
  if (list) {
    var mayWrite = list.getAttribute("data-may-write") === "true";
    var showExpired = document.getElementById("show-expired");
    var created = new URLSearchParams(window.location.search).get("created");
    if (created) {
      var note = document.getElementById("silence-created");
      note.textContent = F.t("Silence {id} created.", { id: created });
      note.hidden = false;
    }

    var expire = function (id) {
      F.sendJSON("DELETE", API + "/silence/" + encodeURIComponent(id)).then(refresh, function (err) {
        F.showError("silences", err.message);
      });
    };

    var render = function (silences) {
      var rows = silences.filter(function (s) {
        return showExpired.checked || s.status.state !== "expired";
      }).map(function (s) {
        var tr = F.el("tr", "silence-row silence-" + s.status.state);
        tr.setAttribute("data-silence-id", s.id);
        F.td(tr, F.term(s.status.state)).className = "state state-" + s.status.state;
        var cell = F.td(tr, "");
        s.matchers.forEach(function (m) { cell.appendChild(F.el("code", "label-chip", matcherText(m))); });
        var starts = Date.parse(s.startsAt) / 1000, ends = Date.parse(s.endsAt) / 1000;
        F.td(tr, F.fmtDateTime(starts));
        F.td(tr, F.fmtDateTime(ends));
        F.td(tr, s.createdBy);
        F.td(tr, s.comment);
        var actions = F.td(tr, "");
        if (mayWrite && s.status.state !== "expired") {
          var btn = F.el("button", "btn expire-silence", F.t("Expire"));
          btn.type = "button";
          btn.addEventListener("click", function () { expire(s.id); });
          actions.appendChild(btn);
        }
        return tr;
      });
      F.fillTable(document.getElementById("silences-table"), rows,
                  showExpired.checked ? F.t("No silences.") : F.t("No active or pending silences."));
    };

    var refresh = function () {
      F.fetchJSON(API + "/silences").then(function (silences) {
        render(silences);
        F.clearError("silences");
      }, function (err) { F.showError("silences", err.message); });
    };
    showExpired.addEventListener("change", refresh);
    refresh();
    window.setInterval(refresh, 10000);
  }

  // ---------------------------------------------------------------- form
  var form = document.getElementById("silence-form");
  if (!form) return;
  var rows = document.getElementById("matcher-rows");
  var formError = document.getElementById("silence-form-error");

  function wireRemove(row) {
    row.querySelector(".m-remove").addEventListener("click", function () {
      if (rows.children.length > 1) rows.removeChild(row);
    });
  }
  Array.prototype.forEach.call(rows.children, wireRemove);
  document.getElementById("add-matcher").addEventListener("click", function () {
    var row = rows.children[0].cloneNode(true);
    row.querySelector(".m-name").value = "";
    row.querySelector(".m-value").value = "";
    row.querySelector(".m-op").selectedIndex = 0;
    rows.appendChild(row);
    wireRemove(row);
  });

  // "1h30m", "2d", "45m" -> seconds; NaN otherwise.
  var UNITS = { s: 1, m: 60, h: 3600, d: 86400, w: 604800 };
  function seconds(text) {
    var parts = text.trim().match(/^(\d+[smhdw])+$/) ? text.trim().match(/\d+[smhdw]/g) : null;
    if (!parts) return NaN;
    return parts.reduce(function (sum, p) { return sum + parseInt(p, 10) * UNITS[p.slice(-1)]; }, 0);
  }

  function fail(message) {
    formError.textContent = message;
    formError.hidden = false;
  }

  form.addEventListener("submit", function (e) {
    e.preventDefault();
    formError.hidden = true;
    var matchers = Array.prototype.map.call(rows.children, function (row) {
      var op = row.querySelector(".m-op").value;
      return { name: row.querySelector(".m-name").value.trim(), value: row.querySelector(".m-value").value,
               isRegex: op.indexOf("~") !== -1, isEqual: op.charAt(0) !== "!" };
    });
    var duration = seconds(document.getElementById("silence-duration").value);
    if (!(duration > 0)) return fail(F.t("Duration must be like 30m, 2h or 1d."));
    var now = Date.now();
    F.sendJSON("POST", API + "/silences", {
      matchers: matchers,
      startsAt: new Date(now).toISOString(),
      endsAt: new Date(now + duration * 1000).toISOString(),
      createdBy: document.getElementById("silence-author").value,
      comment: document.getElementById("silence-comment").value,
    }).then(function (doc) {
      window.location.assign("/alerts/silences?created=" + encodeURIComponent(doc.silenceID));
    }, function (err) { fail(err.message); });
  });
})();
