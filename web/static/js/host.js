/* Fleetdeck host page: header + five uPlot charts fed by /api/v1/metrics/range,
 * kept current by live frames from /api/v1/live (incremental fetch + merge). */
(function () {
  "use strict";
  var F = window.Fleetdeck;
  var root = document.getElementById("host-page");
  var HOST = root.dataset.host;

  var RANGES = { 900: "15m", 3600: "1h", 21600: "6h", 86400: "24h" };
  var DEFAULT_RANGE = 900;
  var CHART_HEIGHT = 240;
  var FALLBACK_POLL_MS = 60000; // catch-up when no live frames arrive
  var HEADER_POLL_MS = 15000;

  // ------------------------------------------------------------ chart specs

  var PALETTE = ["#5794f2", "#73bf69", "#f2cc0c", "#ff780a", "#f2495c", "#b877d9", "#8ab8ff", "#37872d", "#fade2a", "#705da0"];

  var CPU_MODES = {
    user: "#5794f2", system: "#f2495c", iowait: "#ff780a", nice: "#73bf69", irq: "#b877d9",
    softirq: "#705da0", steal: "#fade2a", guest: "#8ab8ff", guest_nice: "#37872d", idle: "#5a6270",
  };
  var CPU_ORDER = ["user", "system", "iowait", "nice", "irq", "softirq", "steal", "guest", "guest_nice", "idle"];

  function q(metric, fn, extra) {
    var p = { metric: metric, host: HOST, fn: fn };
    if (extra) Object.keys(extra).forEach(function (k) { p[k] = extra[k]; });
    return p;
  }

  // Each query: params (besides start/end/step) and how to name its series.
  var CHARTS = [
    {
      id: "chart-cpu", title: "CPU", unit: "percent", scale: 100,
      queries: [{ params: q("node_cpu_seconds_total", "rate", { group_by: "mode", agg: "avg" }),
                  key: function (labels) { return labels.mode || "cpu"; } }],
      order: CPU_ORDER,
      style: function (key, i) {
        return { stroke: CPU_MODES[key] || PALETTE[i % PALETTE.length], show: key !== "idle", width: key === "idle" ? 1 : 1.5 };
      },
    },
    {
      id: "chart-memory", title: "Memory", unit: "bytes",
      queries: [
        { params: q("node_memory_MemTotal_bytes", "raw"), key: "Total" },
        { params: q("node_memory_MemAvailable_bytes", "raw"), key: "Available" },
        { params: q("node_memory_Cached_bytes", "raw"), key: "Cached" },
        { params: q("node_memory_Buffers_bytes", "raw"), key: "Buffers" },
      ],
      derived: { Used: function (row) { return row.Total != null && row.Available != null ? row.Total - row.Available : null; } },
      order: ["Used", "Cached", "Buffers", "Available", "Total"],
      style: function (key) {
        return {
          Used: { stroke: "#ff780a", fill: "rgba(255,120,10,0.12)", width: 1.5 },
          Cached: { stroke: "#5794f2", width: 1.5 },
          Buffers: { stroke: "#b877d9", width: 1.5 },
          Available: { stroke: "#73bf69", width: 1.5 },
          Total: { stroke: "#8e9297", width: 1, dash: [4, 4] },
        }[key] || {};
      },
    },
    {
      id: "chart-load", title: "Load", unit: "number",
      queries: [
        { params: q("node_load1", "raw"), key: "1 min" },
        { params: q("node_load5", "raw"), key: "5 min" },
        { params: q("node_load15", "raw"), key: "15 min" },
      ],
      order: ["1 min", "5 min", "15 min"],
      style: function (key) {
        return { "1 min": { stroke: "#73bf69", width: 1.5 }, "5 min": { stroke: "#f2cc0c", width: 1.5 }, "15 min": { stroke: "#5794f2", width: 1.5 } }[key] || {};
      },
    },
    {
      id: "chart-disk", title: "Disk I/O", unit: "bytesRate",
      queries: [
        { params: q("node_disk_read_bytes_total", "rate", { group_by: "", agg: "sum" }), key: "read" },
        { params: q("node_disk_written_bytes_total", "rate", { group_by: "", agg: "sum" }), key: "write" },
      ],
      order: ["read", "write"],
      style: function (key) {
        return { read: { stroke: "#73bf69", fill: "rgba(115,191,105,0.10)", width: 1.5 }, write: { stroke: "#ff780a", fill: "rgba(255,120,10,0.10)", width: 1.5 } }[key] || {};
      },
    },
    {
      id: "chart-network", title: "Network", unit: "bytesRate",
      queries: [
        { params: q("node_network_receive_bytes_total", "rate", { group_by: "", agg: "sum", "label.device!": "lo" }), key: "receive" },
        { params: q("node_network_transmit_bytes_total", "rate", { group_by: "", agg: "sum", "label.device!": "lo" }), key: "transmit" },
      ],
      order: ["receive", "transmit"],
      style: function (key) {
        return { receive: { stroke: "#5794f2", fill: "rgba(87,148,242,0.10)", width: 1.5 }, transmit: { stroke: "#f2cc0c", fill: "rgba(242,204,12,0.08)", width: 1.5 } }[key] || {};
      },
    },
  ];

  var FORMATS = {
    percent: F.fmtPercent,
    bytes: F.fmtBytes,
    bytesRate: F.fmtBytesRate,
    number: F.fmtNumber,
  };

  // Power-of-two tick increments so byte axes land on 256 MiB, 1 GiB, …
  var IEC_INCRS = (function () {
    var out = [];
    for (var k = 0; k <= 6; k++) {
      [1, 2, 4, 8, 16, 32, 64, 128, 256, 512].forEach(function (m) { out.push(m * Math.pow(1024, k)); });
    }
    return out;
  })();

  // ------------------------------------------------------------ state

  var state = {
    range: DEFAULT_RANGE,
    step: stepFor(DEFAULT_RANGE),
    generation: 0, // bumped on every range change; stale responses are dropped
    winStart: 0,
    winEnd: 0,
  };

  function stepFor(range) {
    return Math.max(10, Math.round(range / 300));
  }

  function nowSec() {
    return Date.now() / 1000;
  }

  // chart runtime objects
  var charts = CHARTS.map(function (spec) {
    var container = document.getElementById(spec.id);
    var status = container.querySelector(".chart-empty");
    if (!status) {
      status = F.el("p", "chart-empty", "");
      container.appendChild(status);
    }
    container.title = "Drag to zoom, double-click to reset";
    return {
      spec: spec,
      container: container,
      status: status,
      store: new Map(), // series key -> Map(ts_ms -> value)
      lastTs: new Map(), // series key -> last ts_ms
      plot: null,
      plotKeys: "", // series keys the current plot was built with
      zoom: null, // [min, max] seconds while the user has zoomed in
      busy: false,
      pending: false,
      loaded: false,
    };
  });

  // ------------------------------------------------------------ data

  function fetchQuery(query, start, end) {
    var params = {};
    Object.keys(query.params).forEach(function (k) { params[k] = query.params[k]; });
    params.start = Math.floor(start);
    params.end = Math.ceil(end);
    params.step = state.step;
    if (params.fn === "rate" || params.fn === "increase") {
      // Grafana's $__rate_interval: a window of at least four collect intervals, so every
      // step's window holds two samples even when collects jitter around the step.
      var interval = hostInfo && F.isNum(hostInfo.interval) ? hostInfo.interval : 10;
      params.window = Math.max(state.step + interval, 4 * interval);
    }
    return F.fetchJSON("/api/v1/metrics/range?" + F.query(params)).then(function (body) {
      if (!body || !Array.isArray(body.series)) throw new Error("malformed response for " + query.params.metric);
      return body.series;
    });
  }

  function seriesKey(query, labels) {
    return typeof query.key === "function" ? query.key(labels || {}) : query.key;
  }

  // Merge fetched series into the chart store. With onlyNewer, points before
  // the series' last known timestamp are ignored; the last one itself may be
  // refreshed (the server stamps a step bucket at its start, and the newest
  // bucket can still gain samples).
  function merge(chart, query, seriesList, onlyNewer) {
    var scale = chart.spec.scale || 1;
    seriesList.forEach(function (s) {
      var key = seriesKey(query, s.labels);
      var pts = chart.store.get(key);
      if (!pts) {
        pts = new Map();
        chart.store.set(key, pts);
      }
      var last = chart.lastTs.has(key) ? chart.lastTs.get(key) : -Infinity;
      var newLast = last;
      (s.points || []).forEach(function (p) {
        var ts = p[0];
        var v = p[1];
        if (typeof ts !== "number") return;
        if (onlyNewer && ts < last) return;
        pts.set(ts, typeof v === "number" && isFinite(v) ? v * scale : null);
        if (ts > newLast) newLast = ts;
      });
      if (newLast > -Infinity) chart.lastTs.set(key, newLast);
    });
  }

  function trim(chart) {
    var cutoff = (nowSec() - state.range) * 1000;
    chart.store.forEach(function (pts) {
      pts.forEach(function (_, ts) {
        if (ts < cutoff) pts.delete(ts);
      });
    });
  }

  function chartLastTs(chart) {
    var last = -Infinity;
    chart.lastTs.forEach(function (ts) { if (ts > last) last = ts; });
    return last;
  }

  function orderedKeys(chart) {
    var spec = chart.spec;
    var keys = Array.from(chart.store.keys());
    if (spec.derived && keys.length) Object.keys(spec.derived).forEach(function (k) { keys.push(k); });
    var order = spec.order || [];
    keys.sort(function (a, b) {
      var ia = order.indexOf(a), ib = order.indexOf(b);
      if (ia === -1) ia = order.length;
      if (ib === -1) ib = order.length;
      return ia !== ib ? ia - ib : a < b ? -1 : a > b ? 1 : 0;
    });
    return keys;
  }

  // Build uPlot's aligned columns: [xs(seconds), ys per key...]
  function buildData(chart, keys) {
    var tsSet = new Set();
    chart.store.forEach(function (pts) { pts.forEach(function (_, ts) { tsSet.add(ts); }); });
    var tss = Array.from(tsSet).sort(function (a, b) { return a - b; });
    var derived = chart.spec.derived || {};
    var cols = [tss.map(function (ts) { return ts / 1000; })];
    keys.forEach(function (key) {
      var pts = chart.store.get(key);
      if (pts) {
        cols.push(tss.map(function (ts) { var v = pts.get(ts); return v === undefined ? null : v; }));
      } else if (derived[key]) {
        cols.push(tss.map(function (ts) {
          var row = {};
          chart.store.forEach(function (p, k) { var v = p.get(ts); row[k] = v === undefined ? null : v; });
          return derived[key](row);
        }));
      } else {
        cols.push(tss.map(function () { return null; }));
      }
    });
    return cols;
  }

  // ------------------------------------------------------------ rendering

  function axisSize(u, values) {
    if (!values) return 50;
    var longest = values.reduce(function (m, v) { return Math.max(m, String(v).length); }, 0);
    return Math.max(84, Math.ceil(longest * 7.2) + 18); // equal widths keep the panels aligned
  }

  var TIME_AXIS_VALUES = F.TIME_AXIS_VALUES;
  var fmtLegendTime = uPlot.fmtDate("{YYYY}-{MM}-{DD} {HH}:{mm}:{ss}");

  function lastValue(u, sidx) {
    var ys = u.data[sidx] || [];
    for (var i = ys.length - 1; i >= 0; i--) if (ys[i] != null) return ys[i];
    return null;
  }

  function plotOptions(chart, keys) {
    var spec = chart.spec;
    var fmt = FORMATS[spec.unit];
    // Without a cursor the legend shows each series' latest value.
    var series = [{
      label: "Time",
      value: function (u, v) { return v == null ? "latest" : fmtLegendTime(new Date(v * 1000)); },
    }];
    keys.forEach(function (key, i) {
      var st = spec.style ? spec.style(key, i) : {};
      series.push({
        label: key,
        stroke: st.stroke || PALETTE[i % PALETTE.length],
        fill: st.fill,
        width: st.width || 1.5,
        dash: st.dash,
        show: st.show !== false,
        spanGaps: true,
        points: { show: function (u) { return u.data[0].length <= 6; } },
        value: function (u, v, sidx, idx) {
          if (idx == null) v = lastValue(u, sidx);
          return v == null ? "—" : fmt(v);
        },
      });
    });
    var axisColor = "#9fa7b3";
    var gridColor = "rgba(204,204,220,0.08)";
    var yAxis = {
      stroke: axisColor,
      grid: { stroke: gridColor, width: 1 },
      ticks: { stroke: gridColor, width: 1 },
      values: function (u, splits) { return splits.map(fmt); },
      size: axisSize,
    };
    if (spec.unit === "bytes" || spec.unit === "bytesRate") yAxis.incrs = IEC_INCRS;
    return {
      width: Math.max(200, chart.container.clientWidth),
      height: CHART_HEIGHT,
      series: series,
      scales: {
        x: {
          time: true,
          range: function (u, min, max) {
            if (chart.zoom) return chart.zoom;
            return [state.winStart, state.winEnd];
          },
        },
        y: {
          range: function (u, min, max) {
            if (min == null || max == null) return [0, spec.unit === "percent" ? 100 : 1];
            var lo = Math.min(0, min);
            var hi = max > 0 ? max * 1.08 : 1;
            if (spec.unit === "percent") hi = Math.max(hi, 5);
            return [lo, hi];
          },
        },
      },
      axes: [
        { stroke: axisColor, grid: { stroke: gridColor, width: 1 }, ticks: { stroke: gridColor, width: 1 }, values: TIME_AXIS_VALUES },
        yAxis,
      ],
      legend: { live: true },
      cursor: {
        drag: { x: true, y: false, setScale: false },
        bind: {
          dblclick: function (u, targ, handler) {
            return function (e) {
              chart.zoom = null;
              handler(e);
              render(chart);
            };
          },
        },
      },
      hooks: {
        draw: [drawMaintenanceSpans, drawDeployMarks, drawAlertSpans],
        setSelect: [function (u) {
          if (u.select.width < 5) return;
          var min = u.posToVal(u.select.left, "x");
          var max = u.posToVal(u.select.left + u.select.width, "x");
          chart.zoom = [min, max];
          u.setSelect({ left: 0, width: 0, top: 0, height: 0 }, false);
          u.setScale("x", { min: min, max: max });
        }],
      },
    };
  }

  function render(chart) {
    trim(chart);
    state.winEnd = nowSec();
    state.winStart = state.winEnd - state.range;
    var keys = orderedKeys(chart);
    var data = buildData(chart, keys);
    var keySig = JSON.stringify(keys);
    if (chart.plot && chart.plotKeys !== keySig) {
      chart.plot.destroy();
      chart.plot = null;
    }
    if (!chart.plot) {
      if (keys.length === 0) {
        chart.status.textContent = chart.loaded ? "No data for " + HOST + " in this range." : "Loading…";
        chart.status.hidden = false;
        chart.container.dataset.points = "0";
        return;
      }
      chart.plot = new uPlot(plotOptions(chart, keys), data, chart.container);
      chart.plotKeys = keySig;
    } else {
      chart.plot.setData(data, true);
    }
    var n = data[0].length;
    chart.status.textContent = n === 0 ? "No data for " + HOST + " in this range." : "";
    chart.status.hidden = n !== 0;
    chart.container.dataset.points = String(n);
  }

  // ------------------------------------------------------------ loading

  function reportChart(chart, err) {
    if (err) F.showError(chart.spec.id, chart.spec.title + " chart — " + err.message);
    else F.clearError(chart.spec.id);
  }

  // Full load of the visible window.
  function loadChart(chart) {
    var gen = state.generation;
    var end = nowSec();
    var start = end - state.range;
    chart.busy = true;
    chart.pending = false;
    return Promise.all(chart.spec.queries.map(function (query) {
      return fetchQuery(query, start, end).then(function (series) { return [query, series]; });
    })).then(function (results) {
      if (gen !== state.generation) return;
      chart.store = new Map();
      chart.lastTs = new Map();
      chart.zoom = null;
      results.forEach(function (r) { merge(chart, r[0], r[1], false); });
      chart.loaded = true;
      render(chart);
      reportChart(chart, null);
    }).catch(function (err) {
      if (gen !== state.generation) return;
      chart.loaded = true;
      render(chart);
      reportChart(chart, err);
    }).then(function () {
      if (gen !== state.generation) return;
      chart.busy = false;
      if (chart.pending) updateChart(chart);
    });
  }

  // Incremental: fetch from (last point − 2 steps) to now, keep only newer points.
  function updateChart(chart) {
    if (chart.busy) {
      chart.pending = true;
      return;
    }
    var last = chartLastTs(chart);
    if (!chart.loaded || last === -Infinity) {
      loadChart(chart);
      return;
    }
    var gen = state.generation;
    var end = nowSec();
    var start = Math.max(end - state.range, last / 1000 - 2 * state.step);
    chart.busy = true;
    chart.pending = false;
    Promise.all(chart.spec.queries.map(function (query) {
      return fetchQuery(query, start, end).then(function (series) { return [query, series]; });
    })).then(function (results) {
      if (gen !== state.generation) return;
      results.forEach(function (r) { merge(chart, r[0], r[1], true); });
      render(chart);
      reportChart(chart, null);
    }).catch(function (err) {
      if (gen !== state.generation) return;
      reportChart(chart, err);
    }).then(function () {
      if (gen !== state.generation) return;
      chart.busy = false;
      if (chart.pending) updateChart(chart);
    });
  }

  function loadAll() {
    state.generation++;
    state.step = stepFor(state.range);
    charts.forEach(function (chart) {
      chart.busy = false;
      chart.pending = false;
      loadChart(chart);
    });
    loadDeployMarks();
    loadAlertSpans();
    loadMaintenanceSpans();
  }

  // ------------------------------------------------------------ deploy markers

  // Deploys of the apps that list this host (apps.<name>.hosts), drawn as dashed
  // vertical lines at their start: green succeeded, red failed or rolled back, blue running.
  var deployMarks = [];
  var MARK_COLORS = { succeeded: "#73bf69", running: "#5794f2", queued: "#5794f2", cancelled: "#9fa7b3" };

  function loadDeployMarks() {
    var since = Math.floor(nowSec() - state.range);
    return F.fetchJSON("/api/v1/deploys?" + F.query({ host: HOST, since: since, limit: 200 })).then(function (body) {
      deployMarks = body.deploys.map(function (d) {
        return { ts: d.started_at || d.created_at, state: d.state, label: d.app + " " + d.version };
      });
      root.dataset.deployMarkers = String(deployMarks.length);
      root.title = deployMarks.length ? "Deploys: " + deployMarks.map(function (m) { return m.label + " (" + m.state + ")"; }).join(", ") : "";
      charts.forEach(function (chart) { if (chart.plot) chart.plot.redraw(false); });
      deployMarksFailed = false;
      F.clearError("deploy-markers");
    }).catch(function (err) {
      deployMarksFailed = true;  // tried again with the next chart update, which clears the banner
      F.showError("deploy-markers", "Deploy markers — " + err.message);
    });
  }
  var deployMarksFailed = false;

  // Each marker's "app version" as text over the plot (u.over, CSS pixels), at the top of
  // its line; rows alternate so that neighbouring deploys do not overprint each other.
  function labelDeployMarks(u) {
    Array.prototype.slice.call(u.over.querySelectorAll(".deploy-label")).forEach(function (n) { n.remove(); });
    deployMarks.forEach(function (m, i) {
      var x = u.valToPos(m.ts, "x");
      if (!(x >= 0 && x <= u.over.clientWidth)) return;
      var label = F.el("span", "deploy-label deploy-" + m.state, m.label);
      label.style.left = Math.round(x) + 3 + "px";
      label.style.top = (i % 3) * 14 + "px";
      label.style.color = MARK_COLORS[m.state] || "#f2495c";
      u.over.appendChild(label);
    });
  }

  function drawDeployMarks(u) {
    labelDeployMarks(u);
    if (!deployMarks.length) return;
    var ctx = u.ctx;
    ctx.save();
    ctx.setLineDash([5, 4]);
    ctx.lineWidth = 1.5;
    deployMarks.forEach(function (m) {
      var x = Math.round(u.valToPos(m.ts, "x", true));
      if (x < u.bbox.left || x > u.bbox.left + u.bbox.width) return;
      ctx.strokeStyle = MARK_COLORS[m.state] || "#f2495c";
      ctx.beginPath();
      ctx.moveTo(x, u.bbox.top);
      ctx.lineTo(x, u.bbox.top + u.bbox.height);
      ctx.stroke();
    });
    ctx.restore();
  }

  // ------------------------------------------------------------ alert spans

  // This host's alerts (history where instance = HOST) drawn as translucent red bands from
  // firing to resolved (or to now while still firing).
  var alertSpans = [];

  function loadAlertSpans() {
    var since = Math.floor(nowSec() - state.range);
    var until = Math.ceil(nowSec());
    return F.fetchJSON("/api/v1/alerts/history?" + F.query({ instance: HOST, since: since, until: until, limit: 10000 })).then(function (body) {
      var open = new Map();
      alertSpans = [];
      body.transitions.slice().reverse().forEach(function (t) {  // oldest first
        var key = JSON.stringify(t.labels);
        if (t.state === "firing") open.set(key, { from: t.ts, to: null, label: t.alertname });
        else if (t.state === "resolved") {  // one that fired before the window starts at its edge
          var span = open.get(key) || { from: since, label: t.alertname };
          span.to = t.ts;
          alertSpans.push(span);
          open.delete(key);
        }
      });
      open.forEach(function (span) { alertSpans.push(span); });
      root.dataset.alertSpans = String(alertSpans.length);
      charts.forEach(function (chart) { if (chart.plot) chart.plot.redraw(false); });
      F.clearError("alert-spans");
    }).catch(function (err) {
      F.showError("alert-spans", "Alert markers — " + err.message);
    });
  }

  function drawAlertSpans(u) {
    if (!alertSpans.length) return;
    var ctx = u.ctx;
    var left = u.bbox.left, right = u.bbox.left + u.bbox.width;
    ctx.save();
    ctx.fillStyle = "rgba(242, 73, 92, 0.15)";
    alertSpans.forEach(function (span) {
      var x0 = Math.max(left, Math.round(u.valToPos(span.from, "x", true)));
      var x1 = Math.min(right, Math.round(u.valToPos(span.to === null ? nowSec() : span.to, "x", true)));
      if (x1 <= x0) return;
      ctx.fillRect(x0, u.bbox.top, x1 - x0, u.bbox.height);
    });
    ctx.restore();
  }

  // ------------------------------------------------------------ maintenance windows

  // Occurrences of the maintenance windows that can cover this host (its hosts, apps or
  // environment), drawn as grey bands, in the chart's range.
  var maintenanceSpans = [];

  function loadMaintenanceSpans() {
    var start = Math.floor(nowSec() - state.range);
    var end = Math.ceil(nowSec());
    return F.fetchJSON("/api/v1/maintenance/windows?" + F.query({ host: HOST, start: start, end: end })).then(function (body) {
      maintenanceSpans = [];
      body.windows.forEach(function (w) {
        (w.occurrences || []).forEach(function (o) { maintenanceSpans.push({ from: o.start, to: o.end, label: w.name }); });
      });
      root.dataset.maintenanceSpans = String(maintenanceSpans.length);
      charts.forEach(function (chart) { if (chart.plot) chart.plot.redraw(false); });
      F.clearError("maintenance-spans");
    }).catch(function (err) {
      F.showError("maintenance-spans", "Maintenance windows — " + err.message);
    });
  }

  function drawMaintenanceSpans(u) {
    if (!maintenanceSpans.length) return;
    var ctx = u.ctx;
    var left = u.bbox.left, right = u.bbox.left + u.bbox.width;
    ctx.save();
    ctx.fillStyle = "rgba(159, 167, 179, 0.18)";
    maintenanceSpans.forEach(function (span) {
      var x0 = Math.max(left, Math.round(u.valToPos(span.from, "x", true)));
      var x1 = Math.min(right, Math.round(u.valToPos(span.to, "x", true)));
      if (x1 <= x0) return;
      ctx.fillRect(x0, u.bbox.top, x1 - x0, u.bbox.height);
    });
    ctx.restore();
  }

  function updateAll() {
    charts.forEach(updateChart);
    if (deployMarksFailed) loadDeployMarks();
  }

  // ------------------------------------------------------------ header

  var hostInfo = null;
  var headerBusy = false;

  function renderHeader() {
    var badge = document.getElementById("host-status");
    if (!hostInfo) {
      badge.className = "badge unknown";
      F.setText(badge, "UNKNOWN");
      F.setText("host-agent", "—");
      F.setText("host-last-seen", "never");
      return;
    }
    var up = hostInfo.up === true;
    badge.className = "badge " + (up ? "up" : "down");
    F.setText(badge, up ? "UP" : "DOWN");
    F.setText("host-agent", hostInfo.agent_version || "—");
    F.renderLabels(document.getElementById("host-labels"), hostInfo.labels);
    renderLastSeen();
  }

  function renderLastSeen() {
    var node = document.getElementById("host-last-seen");
    if (!hostInfo || !F.isNum(hostInfo.last_seen)) {
      F.setText(node, "never");
      return;
    }
    F.setText(node, F.fmtAgo(hostInfo.last_seen));
    node.title = F.fmtDateTime(hostInfo.last_seen);
  }

  function loadHeader() {
    if (headerBusy) return;
    headerBusy = true;
    F.fetchJSON("/api/v1/hosts").then(function (hosts) {
      if (!Array.isArray(hosts)) throw new Error("GET /api/v1/hosts: expected a JSON list");
      hostInfo = hosts.filter(function (h) { return h && h.host === HOST; })[0] || null;
      renderHeader();
      F.clearError("host");
    }).catch(function (err) {
      F.showError("host", "Could not load host status — " + err.message);
    }).then(function () {
      headerBusy = false;
    });
  }

  // ------------------------------------------------------------ range picker

  var buttons = Array.prototype.slice.call(document.querySelectorAll(".range-btn"));

  function rangeFromHash() {
    var m = /(?:^#|&)range=([0-9a-z]+)/.exec(window.location.hash);
    if (!m) return DEFAULT_RANGE;
    var found = DEFAULT_RANGE;
    Object.keys(RANGES).forEach(function (secs) { if (RANGES[secs] === m[1]) found = Number(secs); });
    return found;
  }

  function setRange(range, push) {
    state.range = range;
    buttons.forEach(function (b) {
      b.setAttribute("aria-pressed", Number(b.dataset.range) === range ? "true" : "false");
    });
    if (push) {
      var hash = range === DEFAULT_RANGE ? "" : "#range=" + RANGES[range];
      window.history.replaceState(null, "", window.location.pathname + window.location.search + hash);
    }
    loadAll();
  }

  buttons.forEach(function (b) {
    b.addEventListener("click", function () {
      var r = Number(b.dataset.range);
      if (r !== state.range) setRange(r, true);
    });
  });

  // ------------------------------------------------------------ live

  var wasClosed = false;
  new F.LiveSocket({
    topics: function () { return ["host:" + HOST]; },
    onFrame: function (frame) {
      if (frame.topic !== "host:" + HOST) return;
      var d = frame.data || {};
      if (hostInfo && F.isNum(d.last_ts)) {
        hostInfo.up = true;
        hostInfo.last_seen = Math.max(hostInfo.last_seen || 0, nowSec());
        renderHeader();
      }
      updateAll();
      loadHeader();
    },
    onState: function (s) {
      F.setText("live-status", s === "open" ? "connected" : s === "closed" ? "reconnecting…" : "connecting…");
      var node = document.getElementById("live-status");
      if (node) node.className = "live-" + s;
      if (s === "closed") wasClosed = true;
      if (s === "open" && wasClosed) {
        wasClosed = false;
        updateAll(); // catch up on what was missed while disconnected
      }
    },
  });

  // ------------------------------------------------------------ resize & timers

  var lastWidths = new Map();
  function resizeCharts() {
    charts.forEach(function (chart) {
      var w = chart.container.clientWidth;
      if (!chart.plot || lastWidths.get(chart) === w) return;
      lastWidths.set(chart, w);
      chart.plot.setSize({ width: Math.max(200, w), height: CHART_HEIGHT });
    });
  }
  if (window.ResizeObserver) {
    var ro = new ResizeObserver(function () { window.requestAnimationFrame(resizeCharts); });
    charts.forEach(function (chart) { ro.observe(chart.container); });
  } else {
    window.addEventListener("resize", resizeCharts);
  }

  window.setInterval(renderLastSeen, 1000);
  window.setInterval(loadHeader, HEADER_POLL_MS);
  window.setInterval(updateAll, FALLBACK_POLL_MS);
  window.setInterval(loadDeployMarks, HEADER_POLL_MS); // new deploys appear without a reload
  window.setInterval(loadAlertSpans, HEADER_POLL_MS);
  window.setInterval(loadMaintenanceSpans, HEADER_POLL_MS);
  document.addEventListener("visibilitychange", function () {
    if (!document.hidden) {
      updateAll();
      loadHeader();
    }
  });

  loadHeader();
  setRange(rangeFromHash(), false);
})();
