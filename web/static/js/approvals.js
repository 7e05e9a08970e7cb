/* Deploy page: approve or reject a deploy awaiting approval. The page renders the
 * buttons only for users who may decide (the API checks again: another user than the
 * requester, with the approver role). Each action asks for confirmation first and sends
 * the page's _xsrf token; the page is reloaded with the new state. */
(function () {
  "use strict";
  var F = window.Fleetdeck;
  var form = document.getElementById("approval-form");
  if (!form) return;
  var id = form.getAttribute("data-deploy-id");
  var result = document.getElementById("approval-result");

  function decide(verb) {
    var what = form.getAttribute("data-what");
    if (!window.confirm(verb === "approve" ? F.t("Approve {what}?", { what: what }) : F.t("Reject {what}?", { what: what }))) return;
    var buttons = form.querySelectorAll("button");
    Array.prototype.forEach.call(buttons, function (b) { b.disabled = true; });
    var reason = document.getElementById("approval-reason").value;
    fetch("/api/v1/deploys/" + encodeURIComponent(id) + "/" + verb, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", Accept: "application/json",
                 "X-XSRFToken": form.querySelector('input[name="_xsrf"]').value },
      body: JSON.stringify(reason ? { reason: reason } : {}),
    }).then(function (resp) {
      return resp.json().then(function (body) {
        if (!resp.ok) throw new Error((body.error && body.error.message) || ("HTTP " + resp.status));
        window.location.reload();
      });
    }).catch(function (err) {
      result.textContent = err.message;
      Array.prototype.forEach.call(buttons, function (b) { b.disabled = false; });
    });
  }

  Array.prototype.forEach.call(form.querySelectorAll("button[data-verb]"), function (button) {
    button.addEventListener("click", function () { decide(button.getAttribute("data-verb")); });
  });
})();
