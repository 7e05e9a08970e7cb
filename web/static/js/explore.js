/* Fleetdeck explore page: any stored metric, narrowed by label filters (names and values
 * suggested by the Prometheus API: /prometheus/api/v1/label/__name__/values, /labels,
 * /label/<name>/values), or any PromQL expression, evaluated with
 * /prometheus/api/v1/query_range over the page's time range and shown as a chart or a
 * table. The URL holds the query, the range and the view (?query=&from=&to=&view=), so a
 * link shows the same thing to a colleague. */
(function () {
  "use strict";
  var F = window.Fleetdeck;
  var PROM = "/prometheus/api/v1/";
  var MAX_SERIES_DRAWN = 100;
  var REFRESH_MS = 30000; // a live range re-runs the query this often

  var form = document.getElementById("explore-form");
  var metricInput = document.getElementById("explore-metric");
  var fnSelect = document.getElementById("explore-fn");
  var aggSelect = document.getElementById("explore-agg");
  var byInput = document.getElementById("explore-by");
  var filtersBox = document.getElementById("explore-filters");
  var promql = document.getElementById("promql");
  var status = document.getElementById("explore-status");
  var chartBox = document.getElementById("explore-chart");
  var chartPanel = document.getElementById("explore-chart-panel");
  var tablePanel = document.getElementById("explore-table-panel");
  var table = document.getElementById("explore-table");

  var params = new URLSearchParams(window.location.search);
  var view = params.get("view") === "table" ? "table" : "chart";
  var generation = 0;
  var lastResult = null;

  var range = new F.TimeRange({
    container: document.getElementById("range-picker"),
    defaultFrom: "now-1h",
    onChange: function () { run(); },
  });
  var chart = new F.TimeChart(chartBox, { unit: "number", range: range, empty: F.t("No series in this range.") });

  // ------------------------------------------------------------ Prometheus API

  // GET a /prometheus/api/v1/ path; resolves with `data`, rejects with the API's own
  // "errorType: error" text (e.g. the PromQL parser's message).
  function prom(path, query) {
    return F.fetchRetrying(PROM + path + "?" + query,
                           { credentials: "same-origin", cache: "no-store", headers: { Accept: "application/json" } })
      .then(function (resp) {
        return resp.json().then(function (body) {
          if (body && body.status === "success") return body.data;
          var msg = body && body.error ? (body.errorType || "error") + ": " + body.error : "HTTP " + resp.status;
          throw new Error(msg);
        }, function () { throw new Error("HTTP " + resp.status + " " + resp.statusText); });
      });
  }

  function matchParam(selector) {
    return "match%5B%5D=" + encodeURIComponent(selector);
  }

  function fillDatalist(id, values) {
    var list = document.getElementById(id);
    if (!list) return;
    list.textContent = "";
    values.slice(0, 500).forEach(function (v) {
      var opt = document.createElement("option");
      opt.value = v;
      list.appendChild(opt);
    });
  }

  // ------------------------------------------------------------ builder

  function validName(name) {
    return /^[a-zA-Z_:][a-zA-Z0-9_:]*$/.test(name);
  }

  var filterSeq = 0;

  function filterRows() {
    return Array.prototype.slice.call(filtersBox.querySelectorAll(".filter-row"));
  }

  function filters() {
    return filterRows().map(function (row) {
      return { name: row.querySelector(".filter-name").value.trim(), op: row.querySelector(".filter-op").value,
               value: row.querySelector(".filter-value").value };
    }).filter(function (f) { return validName(f.name); });
  }

  // The selector of the builder: metric{name op "value", ...}, strings quoted as JSON
  // (a subset of PromQL's Go string syntax).
  function selector(except) {
    var metric = metricInput.value.trim();
    var matchers = filters().filter(function (f, i) { return i !== except; }).map(function (f) {
      return f.name + f.op + JSON.stringify(f.value);
    });
    if (!validName(metric)) return matchers.length ? "{" + matchers.join(", ") + "}" : "";
    return metric + (matchers.length ? "{" + matchers.join(", ") + "}" : "");
  }

  function durationText(seconds) {
    return seconds % 60 === 0 ? seconds / 60 + "m" : seconds + "s";
  }

  function build() {
    var sel = selector(-1);
    if (!sel) return;
    var expr = sel;
    if (fnSelect.value) {
      // A window of four collect intervals or the step plus one, whichever is longer
      // (Grafana's $__rate_interval), so every step has two samples to work with.
      var win = Math.max(40, stepFor(range.seconds()) + 10);
      expr = fnSelect.value + "(" + sel + "[" + durationText(win) + "])";
    }
    if (aggSelect.value) {
      var by = byInput.value.split(",").map(function (s) { return s.trim(); }).filter(validName);
      expr = aggSelect.value + (by.length ? " by (" + by.join(", ") + ")" : "") + " (" + expr + ")";
    }
    promql.value = expr;
  }

  function addFilter(name, op, value) {
    var id = "filter-values-" + (++filterSeq);
    var row = F.el("div", "filter-row");
    var nameInput = F.el("input", "filter-name");
    nameInput.type = "text";
    nameInput.setAttribute("list", "label-names");
    nameInput.setAttribute("aria-label", F.t("Label"));
    nameInput.placeholder = "label";
    nameInput.spellcheck = false;
    nameInput.value = name || "";
    var opSelect = F.el("select", "filter-op");
    opSelect.setAttribute("aria-label", F.t("Operator"));
    ["=", "!=", "=~", "!~"].forEach(function (o) {
      var opt = F.el("option", "", o);
      opt.value = o;
      opSelect.appendChild(opt);
    });
    opSelect.value = op || "=";
    var valueInput = F.el("input", "filter-value");
    valueInput.type = "text";
    valueInput.setAttribute("list", id);
    valueInput.setAttribute("aria-label", F.t("Value"));
    valueInput.placeholder = "value";
    valueInput.spellcheck = false;
    valueInput.value = value || "";
    var values = document.createElement("datalist");
    values.id = id;
    var remove = F.el("button", "btn btn-quiet filter-remove", F.t("Remove"));
    remove.type = "button";
    remove.addEventListener("click", function () {
      row.remove();
      rebuild();
    });
    // Values of this label among the series the other filters leave.
    function suggest() {
      var label = nameInput.value.trim();
      if (!validName(label)) return;
      var idx = filterRows().indexOf(row);
      var sel = selector(idx);
      var q = sel ? matchParam(sel) : "";
      prom("label/" + encodeURIComponent(label) + "/values", q).then(function (vals) {
        fillDatalist(id, vals);
        F.clearError("explore-values");
      }).catch(function (err) { F.showError("explore-values", F.t("Label values — ") + err.message); });
    }
    nameInput.addEventListener("change", function () { suggest(); rebuild(); });
    valueInput.addEventListener("focus", suggest);
    valueInput.addEventListener("input", build);
    valueInput.addEventListener("change", rebuild);
    opSelect.addEventListener("change", rebuild);
    row.appendChild(nameInput);
    row.appendChild(opSelect);
    row.appendChild(valueInput);
    row.appendChild(values);
    row.appendChild(remove);
    filtersBox.appendChild(row);
    return row;
  }

  function loadMetricNames() {
    prom("label/__name__/values", "").then(function (names) {
      fillDatalist("metric-names", names);
      metricInput.dataset.names = String(names.length);
      F.clearError("explore-names");
    }).catch(function (err) { F.showError("explore-names", F.t("Metric names — ") + err.message); });
  }

  function loadLabelNames() {
    var metric = metricInput.value.trim();
    var q = validName(metric) ? matchParam(metric) : "";
    prom("labels", q).then(function (names) {
      fillDatalist("label-names", names.filter(function (n) { return n !== "__name__"; }));
      F.clearError("explore-labels");
    }).catch(function (err) { F.showError("explore-labels", F.t("Label names — ") + err.message); });
  }

  // A builder change rewrites the PromQL box and runs it.
  function rebuild() {
    build();
    run();
  }

  metricInput.addEventListener("change", function () { loadLabelNames(); rebuild(); });
  fnSelect.addEventListener("change", rebuild);
  aggSelect.addEventListener("change", rebuild);
  byInput.addEventListener("change", rebuild);
  document.getElementById("add-filter").addEventListener("click", function () {
    addFilter().querySelector(".filter-name").focus();
  });

  // ------------------------------------------------------------ running

  var STEPS = [10, 15, 20, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400];
  function stepFor(seconds) {
    var want = seconds / 400;
    for (var i = 0; i < STEPS.length; i++) if (STEPS[i] >= want) return STEPS[i];
    return STEPS[STEPS.length - 1];
  }

  function seriesName(metric) {
    var name = metric.__name__ || "";
    var labels = Object.keys(metric).filter(function (k) { return k !== "__name__"; }).sort().map(function (k) {
      return k + "=" + JSON.stringify(metric[k]);
    });
    return name + "{" + labels.join(", ") + "}";
  }

  // The unit guessed from the query: byte counts (and their rates) in IEC bytes.
  function unitFor(expr) {
    if (!/_bytes(_total)?\b/.test(expr) || /\bcount\b|\/|\*/.test(expr)) return "number";
    return /\b(rate|irate|deriv)\(/.test(expr) ? "bytesRate" : "bytes";
  }

  function setView(v) {
    view = v;
    document.getElementById("view-chart").setAttribute("aria-pressed", v === "chart" ? "true" : "false");
    document.getElementById("view-table").setAttribute("aria-pressed", v === "table" ? "true" : "false");
    chartPanel.hidden = v !== "chart";
    tablePanel.hidden = v !== "table";
    range.setParams({ view: v === "chart" ? null : v });
    if (v === "chart" && lastResult) drawChart(lastResult);
  }

  function drawChart(res) {
    var maps = new Map();
    res.result.slice(0, MAX_SERIES_DRAWN).forEach(function (s) {
      var m = new Map();
      s.values.forEach(function (p) {
        var v = Number(p[1]);
        if (isFinite(v)) m.set(p[0], v);
      });
      maps.set(seriesName(s.metric), m);
    });
    var unit = unitFor(res.query);
    if (chart.opts.unit !== unit) {
      chart.opts.unit = unit;
      chart.keySig = ""; // rebuilt with the new axis format
    }
    // A step without a value: the series was absent (no sample within the lookback).
    chart.draw(Array.from(maps.keys()), maps, res.window, res.step * 1.5);
  }

  function fmtValue(v, unit) {
    if (!F.isNum(v)) return "—";
    return unit === "bytes" ? F.fmtBytes(v) : unit === "bytesRate" ? F.fmtBytesRate(v) : F.fmtNumber(v);
  }

  function drawTable(res) {
    var unit = unitFor(res.query);
    var rows = res.result.map(function (s) {
      var vals = s.values.map(function (p) { return Number(p[1]); }).filter(isFinite);
      var tr = F.el("tr");
      var name = F.td(tr, seriesName(s.metric));
      name.className = "series-name";
      var last = s.values.length ? s.values[s.values.length - 1] : null;
      F.td(tr, fmtValue(last ? Number(last[1]) : null, unit)).className = "num";
      F.td(tr, fmtValue(vals.length ? Math.min.apply(null, vals) : null, unit)).className = "num";
      F.td(tr, fmtValue(vals.length ? Math.max.apply(null, vals) : null, unit)).className = "num";
      F.td(tr, fmtValue(vals.length ? vals.reduce(function (a, b) { return a + b; }, 0) / vals.length : null, unit)).className = "num";
      F.td(tr, last ? F.fmtDateTime(last[0]) : "—").className = "nowrap";
      return tr;
    });
    F.fillTable(table, rows, F.t("No series in this range."));
  }

  function run() {
    var expr = promql.value.trim();
    range.setParams({ query: expr || null });
    if (!expr) {
      status.textContent = "";
      return;
    }
    var gen = ++generation;
    var w = range.window();
    var step = stepFor(w.end - w.start);
    var start = Math.floor(w.start / step) * step;
    status.textContent = F.t("Running…");
    // The end to the millisecond, not rounded up: while live, a rate step point stamped after
    // "now" would be computed before its samples arrived (as on the host page).
    var end = Math.floor(w.end * 1000) / 1000;
    prom("query_range", F.query({ query: expr, start: start, end: end, step: step })).then(function (data) {
      if (gen !== generation) return;
      if (data.resultType !== "matrix") throw new Error("expected a matrix, got " + data.resultType);
      var res = { query: expr, result: data.result, step: step, window: { start: w.start, end: w.end } };
      lastResult = res;
      var n = res.result.length;
      status.textContent = F.t("{n} series", { n: n })
        + (n > MAX_SERIES_DRAWN ? F.t(" (the chart draws the first {n})", { n: MAX_SERIES_DRAWN }) : "") + F.t(" · step {n} s", { n: step });
      status.dataset.series = String(n);
      drawTable(res);
      if (view === "chart") drawChart(res);
      F.clearError("explore-query");
    }).catch(function (err) {
      if (gen !== generation) return;
      status.textContent = "";
      F.showError("explore-query", F.t("Query failed — ") + err.message);
    });
  }

  form.addEventListener("submit", function (e) {
    e.preventDefault();
    run();
  });
  promql.addEventListener("keydown", function (e) {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey || !e.shiftKey)) {  // Shift+Enter: a new line
      e.preventDefault();
      run();
    }
  });
  document.getElementById("view-chart").addEventListener("click", function () { setView("chart"); });
  document.getElementById("view-table").addEventListener("click", function () { setView("table"); });

  window.setInterval(function () {
    if (range.window().live && !document.hidden && promql.value.trim()) run();
  }, REFRESH_MS);

  // ------------------------------------------------------------ start

  var initial = params.get("query") || "";
  promql.value = initial;
  var lead = /^\s*([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(\{|$)/.exec(initial); // a plain selector names its metric
  if (lead) metricInput.value = lead[1];
  setView(view);
  loadMetricNames();
  loadLabelNames();
  if (initial) run();
})();
