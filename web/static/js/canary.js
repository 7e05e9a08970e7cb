/* Canary analysis on the deploy page: the verdict of the canary stage and, per check,
 * its query, its threshold and every evaluated value (a sparkline with the threshold
 * drawn across it), from the deploy's "canary" and "analysis" (GET /api/v1/deploys/ID).
 * Refreshed every 2 s until the deploy finishes. Server text is data: it is only ever
 * inserted with textContent. */
(function () {
  "use strict";
  var section = document.getElementById("canary");
  var page = document.getElementById("deploy-page");
  if (!section || !page) return;
  var id = page.getAttribute("data-deploy-id");
  var FINAL = { succeeded: 1, failed: 1, rolled_back: 1, cancelled: 1 };
  var SVG = "http://www.w3.org/2000/svg";
  var F = window.Fleetdeck;

  function cell(tr, text, className) {
    var td = document.createElement("td");
    td.textContent = text;
    if (className) td.className = className;
    tr.appendChild(td);
    return td;
  }

  function shown(v) {
    return v === null || v === undefined ? F.t("no data") : String(Number(v.toPrecision(6)));
  }

  // values [[t, v], ...] and the threshold, scaled into a 160x28 box.
  function sparkline(values, threshold) {
    var w = 160, h = 28, pad = 3;
    var svg = document.createElementNS(SVG, "svg");
    svg.setAttribute("class", "canary-spark");
    svg.setAttribute("width", String(w));
    svg.setAttribute("height", String(h));
    svg.setAttribute("role", "img");
    var nums = values.map(function (p) { return p[1]; }).filter(function (v) { return v !== null; });
    svg.setAttribute("aria-label", nums.length + " value(s), threshold " + threshold);
    var all = nums.concat([threshold]);
    var lo = Math.min.apply(null, all), hi = Math.max.apply(null, all);
    if (hi === lo) { hi += 1; lo -= 1; }
    function y(v) { return (h - pad - (v - lo) / (hi - lo) * (h - 2 * pad)).toFixed(1); }
    function x(i) { return (values.length < 2 ? w / 2 : pad + i * (w - 2 * pad) / (values.length - 1)).toFixed(1); }
    var limit = document.createElementNS(SVG, "line");
    limit.setAttribute("x1", "0"); limit.setAttribute("x2", String(w));
    limit.setAttribute("y1", y(threshold)); limit.setAttribute("y2", y(threshold));
    limit.setAttribute("class", "canary-threshold");
    svg.appendChild(limit);
    var points = [];
    values.forEach(function (p, i) {
      if (p[1] === null) return;
      points.push(x(i) + "," + y(p[1]));
      var dot = document.createElementNS(SVG, "circle");
      dot.setAttribute("cx", x(i)); dot.setAttribute("cy", y(p[1])); dot.setAttribute("r", "2");
      svg.appendChild(dot);
    });
    var line = document.createElementNS(SVG, "polyline");
    line.setAttribute("points", points.join(" "));
    line.setAttribute("class", "canary-line");
    svg.insertBefore(line, svg.firstChild.nextSibling);
    return svg;
  }

  // The verdict and check states, in the page's language (the class keeps the state's name).
  function stateText(state) {
    return { passed: F.t("passed"), failed: F.t("failed"), running: F.t("running"),
             cancelled: F.t("cancelled") }[state] || state;
  }

  function render(d) {
    if (!d.canary) return;
    section.hidden = false;
    var verdict = document.getElementById("canary-verdict");
    verdict.textContent = stateText(d.canary.verdict);
    verdict.className = "badge canary-" + d.canary.verdict;
    document.getElementById("canary-message").textContent = d.canary.message;
    var body = document.getElementById("canary-table").querySelector("tbody");
    body.textContent = "";
    (d.analysis || []).forEach(function (a) {
      var tr = document.createElement("tr");
      tr.setAttribute("data-check", a.check);
      cell(tr, a.check);
      var q = cell(tr, "");
      var code = document.createElement("code");
      code.textContent = a.query;
      q.appendChild(code);
      cell(tr, a.op + " " + a.threshold);
      var last = a.values.length ? a.values[a.values.length - 1][1] : null;
      cell(tr, a.values.map(function (p) { return shown(p[1]); }).join(", "), "canary-values")
        .setAttribute("title", F.t("last: {value}", { value: shown(last) }));
      cell(tr, "").appendChild(sparkline(a.values, a.threshold));
      var state = a.passed === true ? "passed" : a.passed === false ? "failed" : "running";
      cell(tr, stateText(state), "canary-" + state);
      body.appendChild(tr);
    });
  }

  function load() {
    F.fetchJSON("/api/v1/deploys/" + id).then(function (d) {
      render(d);
      if (!FINAL[d.state]) window.setTimeout(load, 2000);
    }, function () { window.setTimeout(load, 5000); });
  }

  load();
})();
