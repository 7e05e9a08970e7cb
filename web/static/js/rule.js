/* Rule page: the rule's state, health and active alerts (/prometheus/api/v1/rules), its
 * PromQL expression over the last 6 h (/prometheus/api/v1/query_range; for "X > 0.9" the
 * server hands over X as data-query and 0.9 as data-threshold, drawn as a dashed line) and
 * its transitions over the last 7 days (/api/v1/alerts/history). Refreshed every 30 s.
 * Server text is data: it is only ever inserted with textContent. */
(function () {
  "use strict";
  var page = document.getElementById("rule-page");
  if (!page) return;
  var F = window.Fleetdeck;
  var RANGE = 21600;
  var STEP = 60;
  var MAX_SERIES = 20;
  var PALETTE = ["#73bf69", "#6e9fff", "#f2cc0c", "#ff9830", "#b877d9", "#5794f2", "#8ab8ff", "#ff7383"];
  var group = page.dataset.group;
  var groupKey = page.dataset.groupKey;
  var name = page.dataset.rule;
  var chartQuery = page.dataset.query;
  var threshold = page.dataset.threshold === "" ? null : Number(page.dataset.threshold);
  if (threshold !== null && !isFinite(threshold)) threshold = null;
  var chartEl = document.getElementById("rule-chart");
  var plot = null;
  var plotSig = "";

  var td = F.td, labelsCell = F.alertLabelsCell;

  function fill(table, rows, empty) {
    if (table) F.fillTable(table, rows, empty); // a recording rule's page has no alert tables
  }

  // ------------------------------------------------------------ rule state

  function renderRule(data) {
    var rule = null;
    data.groups.forEach(function (g) {
      if (rule || g.name !== group) return;
      g.rules.forEach(function (r) { if (!rule && r.name === name) rule = r; });
    });
    var state = document.getElementById("rule-state");
    if (!rule) {
      state.textContent = F.t("removed");
      state.className = "state state-inactive";
      F.setText("rule-health", F.t("The rule is no longer loaded (its file changed); reload the page."));
      return;
    }
    var kind = rule.type === "recording" ? "recording" : rule.state;
    state.textContent = F.term(kind);
    state.className = "state state-" + kind;
    var health = document.getElementById("rule-health");
    health.textContent = F.term(rule.health) + (rule.lastError ? ": " + rule.lastError : "") +
      (rule.lastEvaluation && rule.lastEvaluation.indexOf("0001-") !== 0
        ? F.t(" · evaluated {ago}", { ago: F.fmtAgo(Date.parse(rule.lastEvaluation) / 1000) }) : F.t(" · not evaluated yet"));
    health.className = "health-" + rule.health;
    fill(document.getElementById("active-table"), (rule.alerts || []).map(function (a) {
      var tr = F.el("tr", "alert-row alert-" + a.state);
      td(tr, F.term(a.state)).className = "state nowrap state-" + a.state;
      td(tr, F.fmtNumber(Number(a.value))).className = "num";
      var since = Date.parse(a.activeAt) / 1000;
      td(tr, F.fmtAgo(since)).title = F.fmtDateTime(since);
      labelsCell(tr, a.labels);
      return tr;
    }), F.t("No firing or pending alerts."));
  }

  // ------------------------------------------------------------ history

  function renderHistory(body) {
    var rows = body.transitions.filter(function (t) { return t.group === groupKey; });
    fill(document.getElementById("history-table"), rows.map(function (t) {
      var tr = F.el("tr", "alert-row alert-" + t.state);
      var when = td(tr, F.fmtDateTime(t.ts));
      when.title = F.fmtAgo(t.ts);
      when.className = "when";
      td(tr, F.term(t.state)).className = "state nowrap state-" + t.state;
      td(tr, t.value === null ? "—" : F.fmtNumber(t.value)).className = "num";
      labelsCell(tr, t.labels);
      // Why the transition notified no one (silence:ID, window:NAME, ...); silences link to their list.
      var muted = td(tr, "");
      muted.className = "muted-by";
      (t.muted_by || []).forEach(function (reason) {
        if (reason.indexOf("silence:") === 0) {
          var a = F.el("a", "label-chip", reason);
          a.href = "/alerts/silences";
          muted.appendChild(a);
        } else {
          muted.appendChild(F.el("span", "label-chip", reason));
        }
      });
      return tr;
    }), F.t("No transitions in the last 7 days."));
  }

  // ------------------------------------------------------------ chart

  function seriesName(metric) {
    var keys = Object.keys(metric).sort();
    if (!keys.length) return "{}";
    return "{" + keys.map(function (k) { return k + '="' + metric[k] + '"'; }).join(", ") + "}";
  }

  // Matrix -> uPlot's aligned columns on the query's step grid. A step without a sample
  // stays null, and the series are not joined across nulls, so gaps show.
  function columns(result, start, end) {
    var xs = [];
    for (var t = start; t <= end + 1e-9; t += STEP) xs.push(t);
    var cols = [xs];
    result.forEach(function (s) {
      var ys = xs.map(function () { return null; });
      s.values.forEach(function (p) {
        var i = Math.round((p[0] - start) / STEP);
        var v = Number(p[1]);
        if (i >= 0 && i < ys.length && isFinite(v)) ys[i] = v;
      });
      cols.push(ys);
    });
    return cols;
  }

  // The threshold as a dashed horizontal line across the plot area.
  function drawThreshold(u) {
    if (threshold === null) return;
    var y = Math.round(u.valToPos(threshold, "y", true));
    var ctx = u.ctx;
    ctx.save();
    ctx.strokeStyle = "#ff6b6b";
    ctx.lineWidth = 1.5 * devicePixelRatio;
    ctx.setLineDash([6 * devicePixelRatio, 4 * devicePixelRatio]);
    ctx.beginPath();
    ctx.moveTo(u.bbox.left, y);
    ctx.lineTo(u.bbox.left + u.bbox.width, y);
    ctx.stroke();
    ctx.restore();
    chartEl.dataset.thresholdDrawn = String(threshold);
  }

  function lastValue(u, sidx) {
    var ys = u.data[sidx] || [];
    for (var i = ys.length - 1; i >= 0; i--) if (ys[i] != null) return ys[i];
    return null;
  }

  function options(labels, start, end) {
    // Without a cursor the legend shows each series' latest value.
    var series = [{
      label: F.t("Time"),
      value: function (u, v) { return v == null ? F.t("latest") : F.fmtDateTime(v); },
    }];
    labels.forEach(function (label, i) {
      series.push({
        label: label,
        stroke: PALETTE[i % PALETTE.length],
        width: 1.5,
        spanGaps: false,
        value: function (u, v, sidx, idx) {
          if (idx == null) v = lastValue(u, sidx);
          return v == null ? "—" : F.fmtNumber(v);
        },
      });
    });
    // The theme's colours, read when uPlot draws (the theme switch redraws).
    var axisColor = function () { return F.themeColor("--axis"); };
    var gridColor = function () { return F.themeColor("--grid"); };
    return {
      width: Math.max(200, chartEl.clientWidth),
      height: 240,
      series: series,
      tzDate: F.uplotTzDate,
      scales: {
        x: { time: true, range: function () { return [start, end]; } },
        y: {
          range: function (u, min, max) {
            // Keep the threshold in view even while every sample is far from it.
            if (threshold !== null) {
              min = min == null ? threshold : Math.min(min, threshold);
              max = max == null ? threshold : Math.max(max, threshold);
            }
            if (min == null || max == null) return [0, 1];
            var pad = (max - min) * 0.08 || Math.abs(max) * 0.1 || 1;
            return [min >= 0 && min - pad < 0 ? 0 : min - pad, max + pad];
          },
        },
      },
      axes: [
        { stroke: axisColor, grid: { stroke: gridColor, width: 1 }, ticks: { stroke: gridColor, width: 1 },
          values: F.TIME_AXIS_VALUES },
        { stroke: axisColor, grid: { stroke: gridColor, width: 1 }, ticks: { stroke: gridColor, width: 1 },
          values: function (u, splits) { return splits.map(F.fmtNumber); }, size: 60 },
      ],
      legend: { live: true },
      hooks: { draw: [drawThreshold] },
    };
  }

  // A theme or time-zone switch rebuilds the chart with the new colours and axis times.
  var lastRender = null;
  ["fleetdeck:theme", "fleetdeck:timezone"].forEach(function (name) {
    document.addEventListener(name, function () {
      if (!plot || !lastRender) return;
      plot.destroy();
      plot = null;
      renderChart.apply(null, lastRender);
    });
  });

  function renderChart(body, start, end) {
    lastRender = [body, start, end];
    var status = chartEl.querySelector(".chart-empty");
    var result = body.data.result || [];
    var shown = result.slice(0, MAX_SERIES);
    var labels = shown.map(function (s) { return seriesName(s.metric); });
    var data = columns(shown, start, end);
    var sig = JSON.stringify(labels);
    if (plot && sig !== plotSig) {
      plot.destroy();
      plot = null;
    }
    chartEl.dataset.series = String(shown.length);
    chartEl.dataset.points = String(shown.reduce(function (n, s) { return n + s.values.length; }, 0));
    if (!shown.length) {
      status.textContent = F.t("No samples in the last 6 hours.");
      status.hidden = false;
      return;
    }
    status.hidden = true;
    if (!plot) {
      plot = new uPlot(options(labels, start, end), data, chartEl);
      plotSig = sig;
    } else {
      plot.setScale("x", { min: start, max: end });
      plot.setData(data, true);
    }
    if (result.length > MAX_SERIES) {
      F.showError("rule-chart", "The chart shows the first " + MAX_SERIES + " of " + result.length + " series.");
    } else {
      F.clearError("rule-chart");
    }
  }

  function refresh() {
    var now = Date.now() / 1000;
    var end = Math.floor(now / STEP) * STEP;
    var start = end - RANGE;
    F.fetchJSON("/prometheus/api/v1/rules").then(function (body) {
      renderRule(body.data);
      F.clearError("rule");
    }, function (err) { F.showError("rule", "Rule: " + err.message); });
    if (document.getElementById("history-table")) {
      F.fetchJSON("/api/v1/alerts/history?" + F.query({ alertname: name, since: (now - 7 * 86400).toFixed(0), limit: 1000 }))
        .then(function (body) {
          renderHistory(body);
          F.clearError("history");
        }, function (err) { F.showError("history", "History: " + err.message); });
    }
    if (chartEl) {
      F.fetchJSON("/prometheus/api/v1/query_range?" + F.query({ query: chartQuery, start: start, end: end, step: STEP }))
        .then(function (body) {
          renderChart(body, start, end);
          F.clearError("chart");
        }, function (err) { F.showError("chart", "Chart: " + err.message); });
    }
  }

  window.addEventListener("resize", function () {
    if (plot) plot.setSize({ width: Math.max(200, chartEl.clientWidth), height: 240 });
  });
  refresh();
  window.setInterval(refresh, 30000);
})();
