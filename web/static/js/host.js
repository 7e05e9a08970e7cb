/* Fleetdeck host page: sections of uPlot charts in the spirit of node_exporter dashboards
 * (overview, CPU, memory, filesystems, disks, network, pressure), fed by
 * /api/v1/metrics/range and kept current by live frames from /api/v1/live (incremental
 * fetch + merge). The time range is the page's (Fleetdeck.TimeRange, ?from=&to=): a drag
 * on any chart zooms them all. A section's charts load when it is opened. */
(function () {
  "use strict";
  var F = window.Fleetdeck;
  var root = document.getElementById("host-page");
  var HOST = root.dataset.host;

  var FALLBACK_POLL_MS = 60000; // catch-up when no live frames arrive
  var HEADER_POLL_MS = 15000;
  var RETRY_MS = 5000; // a chart whose load failed tries again after this

  // ------------------------------------------------------------ chart specs

  var PALETTE = F.CHART_PALETTE;

  var CPU_MODES = {
    user: "#5794f2", system: "#f2495c", iowait: "#ff780a", nice: "#73bf69", irq: "#b877d9",
    softirq: "#705da0", steal: "#fade2a", guest: "#8ab8ff", guest_nice: "#37872d", idle: "#5a6270",
  };
  var CPU_ORDER = ["user", "system", "iowait", "nice", "irq", "softirq", "steal", "guest", "guest_nice", "idle"];

  // Legend names in the page's language. Series keys stay English: they index the
  // charts' styles, orders and derived series; only the legend shows these names.
  var SERIES_NAMES = {
    "Used": F.t("Used"), "Total": F.t("Total"), "Available": F.t("Available"), "Cached": F.t("Cached"),
    "Buffers": F.t("Buffers"), "Free": F.t("Free"), "Shared": F.t("Shared"),
    "1 min": F.t("1 min"), "5 min": F.t("5 min"), "15 min": F.t("15 min"),
    "read": F.t("read"), "write": F.t("write"), "receive": F.t("receive"), "transmit": F.t("transmit"),
    "running": F.t("running"), "blocked": F.t("blocked"), "context switches/s": F.t("context switches/s"),
    "interrupts/s": F.t("interrupts/s"), "forks/s": F.t("forks/s"),
  };
  // Keys "<prefix><device or mount>": the prefix is translated, the name kept.
  var SERIES_PREFIXES = [
    ["receive errors ", F.t("receive errors")], ["transmit errors ", F.t("transmit errors")],
    ["receive drops ", F.t("receive drops")], ["transmit drops ", F.t("transmit drops")],
    ["reads/s ", F.t("reads/s")], ["writes/s ", F.t("writes/s")], ["read ", F.t("read")], ["write ", F.t("write")],
    ["receive ", F.t("receive")], ["transmit ", F.t("transmit")],
  ];

  function seriesName(key) {
    if (Object.prototype.hasOwnProperty.call(SERIES_NAMES, key)) return SERIES_NAMES[key];
    for (var i = 0; i < SERIES_PREFIXES.length; i++) {
      var p = SERIES_PREFIXES[i];
      if (key.indexOf(p[0]) === 0) return p[1] + " " + key.slice(p[0].length);
    }
    return key;
  }

  function q(metric, fn, extra) {
    var p = { metric: metric, host: HOST, fn: fn };
    if (extra) Object.keys(extra).forEach(function (k) { p[k] = extra[k]; });
    return p;
  }

  function label(name, fallback) {
    return function (labels) { return (labels && labels[name]) || fallback; };
  }

  function prefixed(prefix, name) {
    return function (labels) { return prefix + ((labels && labels[name]) || "?"); };
  }

  function fixed(styles) {
    return function (key) { return styles[key] || {}; };
  }

  // Derived series per mount point from hidden "_size /", "_avail /" series.
  function ratioPerKey(partPrefix, wholePrefix, used) {
    return function (row) {
      var out = {};
      Object.keys(row).forEach(function (k) {
        if (k.indexOf(wholePrefix) !== 0) return;
        var name = k.slice(wholePrefix.length);
        var whole = row[k], part = row[partPrefix + name];
        if (whole == null || part == null || !(whole > 0)) return;
        out[name] = used ? 100 * (1 - part / whole) : 100 * part / whole;
      });
      return out;
    };
  }

  var NOT_LO = { "label.device!": "lo" };

  // Each chart: where it is (id), unit, queries (params besides start/end/step, and how
  // to name their series), optional derive(row) -> {key: value} per timestamp (series whose
  // key starts with "_" are inputs only, not drawn), order, style.
  var CHARTS = [
    {
      id: "chart-cpu", title: "CPU", unit: "percent", scale: 100,
      queries: [{ params: q("node_cpu_seconds_total", "rate", { group_by: "mode", agg: "avg" }), key: label("mode", "cpu") }],
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
      derive: function (row) { return row.Total != null && row.Available != null ? { Used: row.Total - row.Available } : {}; },
      order: ["Used", "Cached", "Buffers", "Available", "Total"],
      style: fixed({
        Used: { stroke: "#ff780a", fill: "rgba(255,120,10,0.12)", width: 1.5 },
        Cached: { stroke: "#5794f2", width: 1.5 },
        Buffers: { stroke: "#b877d9", width: 1.5 },
        Available: { stroke: "#73bf69", width: 1.5 },
        Total: { stroke: "#8e9297", width: 1, dash: [4, 4] },
      }),
    },
    {
      id: "chart-load", title: "Load", unit: "number",
      queries: [
        { params: q("node_load1", "raw"), key: "1 min" },
        { params: q("node_load5", "raw"), key: "5 min" },
        { params: q("node_load15", "raw"), key: "15 min" },
      ],
      order: ["1 min", "5 min", "15 min"],
      style: fixed({ "1 min": { stroke: "#73bf69" }, "5 min": { stroke: "#f2cc0c" }, "15 min": { stroke: "#5794f2" } }),
    },
    {
      id: "chart-disk", title: "Disk I/O", unit: "bytesRate",
      queries: [
        { params: q("node_disk_read_bytes_total", "rate", { group_by: "", agg: "sum" }), key: "read" },
        { params: q("node_disk_written_bytes_total", "rate", { group_by: "", agg: "sum" }), key: "write" },
      ],
      order: ["read", "write"],
      style: fixed({ read: { stroke: "#73bf69", fill: "rgba(115,191,105,0.10)" }, write: { stroke: "#ff780a", fill: "rgba(255,120,10,0.10)" } }),
    },
    {
      id: "chart-network", title: "Network", unit: "bytesRate",
      queries: [
        { params: q("node_network_receive_bytes_total", "rate", { group_by: "", agg: "sum", "label.device!": "lo" }), key: "receive" },
        { params: q("node_network_transmit_bytes_total", "rate", { group_by: "", agg: "sum", "label.device!": "lo" }), key: "transmit" },
      ],
      order: ["receive", "transmit"],
      style: fixed({ receive: { stroke: "#5794f2", fill: "rgba(87,148,242,0.10)" }, transmit: { stroke: "#f2cc0c", fill: "rgba(242,204,12,0.08)" } }),
    },
    // CPU
    {
      id: "chart-cpu-cores", title: "CPU per core", unit: "percent", scale: 100,
      queries: [{ params: q("node_cpu_seconds_total", "rate", { group_by: "cpu", agg: "sum", "label.mode!": "idle" }),
                  key: prefixed("cpu ", "cpu") }],
      sortNumeric: true,
    },
    {
      id: "chart-cpu-activity", title: "Context switches and interrupts", unit: "number",
      queries: [
        { params: q("node_context_switches_total", "rate"), key: "context switches/s" },
        { params: q("node_intr_total", "rate"), key: "interrupts/s" },
        { params: q("node_forks_total", "rate"), key: "forks/s" },
      ],
    },
    {
      id: "chart-procs", title: "Processes", unit: "number",
      queries: [
        { params: q("node_procs_running", "raw"), key: "running" },
        { params: q("node_procs_blocked", "raw"), key: "blocked" },
      ],
    },
    // Memory
    {
      id: "chart-memory-detail", title: "Memory breakdown", unit: "bytes",
      queries: [
        { params: q("node_memory_MemTotal_bytes", "raw"), key: "_total" },
        { params: q("node_memory_MemAvailable_bytes", "raw"), key: "_available" },
        { params: q("node_memory_MemFree_bytes", "raw"), key: "Free" },
        { params: q("node_memory_Cached_bytes", "raw"), key: "Cached" },
        { params: q("node_memory_Buffers_bytes", "raw"), key: "Buffers" },
        { params: q("node_memory_Slab_bytes", "raw"), key: "Slab" },
        { params: q("node_memory_Shmem_bytes", "raw"), key: "Shared" },
      ],
      derive: function (row) {
        return row._total != null && row._available != null ? { Used: row._total - row._available } : {};
      },
      order: ["Used", "Cached", "Buffers", "Slab", "Shared", "Free"],
    },
    {
      id: "chart-swap", title: "Swap", unit: "bytes",
      queries: [
        { params: q("node_memory_SwapTotal_bytes", "raw"), key: "Total" },
        { params: q("node_memory_SwapFree_bytes", "raw"), key: "_free" },
      ],
      derive: function (row) { return row.Total != null && row._free != null ? { Used: row.Total - row._free } : {}; },
      order: ["Used", "Total"],
      style: fixed({ Used: { stroke: "#ff780a" }, Total: { stroke: "#8e9297", width: 1, dash: [4, 4] } }),
    },
    // Filesystems
    {
      id: "chart-fs-used", title: "Space used per mount", unit: "percent",
      queries: [
        { params: q("node_filesystem_size_bytes", "raw"), key: prefixed("_size ", "mountpoint"), keep: true },
        { params: q("node_filesystem_avail_bytes", "raw"), key: prefixed("_avail ", "mountpoint"), keep: true },
      ],
      derive: ratioPerKey("_avail ", "_size ", true),
    },
    {
      id: "chart-fs-inodes", title: "Inodes used per mount", unit: "percent",
      queries: [
        { params: q("node_filesystem_files", "raw"), key: prefixed("_files ", "mountpoint"), keep: true },
        { params: q("node_filesystem_files_free", "raw"), key: prefixed("_ffree ", "mountpoint"), keep: true },
      ],
      derive: ratioPerKey("_ffree ", "_files ", true),
    },
    // Disks
    {
      id: "chart-disk-devices", title: "Disk throughput per device", unit: "bytesRate",
      queries: [
        { params: q("node_disk_read_bytes_total", "rate", { group_by: "device", agg: "sum" }), key: prefixed("read ", "device") },
        { params: q("node_disk_written_bytes_total", "rate", { group_by: "device", agg: "sum" }), key: prefixed("write ", "device") },
      ],
    },
    {
      id: "chart-disk-iops", title: "Disk operations per device", unit: "number",
      queries: [
        { params: q("node_disk_reads_completed_total", "rate", { group_by: "device", agg: "sum" }), key: prefixed("reads/s ", "device") },
        { params: q("node_disk_writes_completed_total", "rate", { group_by: "device", agg: "sum" }), key: prefixed("writes/s ", "device") },
      ],
    },
    {
      id: "chart-disk-util", title: "Disk busy time per device", unit: "percent", scale: 100,
      queries: [{ params: q("node_disk_io_time_seconds_total", "rate", { group_by: "device", agg: "sum" }), key: label("device", "?") }],
    },
    // Network
    {
      id: "chart-net-devices", title: "Network traffic per interface", unit: "bytesRate",
      queries: [
        { params: q("node_network_receive_bytes_total", "rate", { group_by: "device", agg: "sum", "label.device!": "lo" }), key: prefixed("receive ", "device") },
        { params: q("node_network_transmit_bytes_total", "rate", { group_by: "device", agg: "sum", "label.device!": "lo" }), key: prefixed("transmit ", "device") },
      ],
    },
    {
      id: "chart-net-packets", title: "Packets per interface", unit: "number",
      queries: [
        { params: q("node_network_receive_packets_total", "rate", { group_by: "device", agg: "sum", "label.device!": "lo" }), key: prefixed("receive ", "device") },
        { params: q("node_network_transmit_packets_total", "rate", { group_by: "device", agg: "sum", "label.device!": "lo" }), key: prefixed("transmit ", "device") },
      ],
    },
    {
      id: "chart-net-errors", title: "Errors and drops per interface", unit: "number",
      queries: [
        { params: q("node_network_receive_errs_total", "rate", { group_by: "device", agg: "sum", "label.device!": "lo" }), key: prefixed("receive errors ", "device") },
        { params: q("node_network_transmit_errs_total", "rate", { group_by: "device", agg: "sum", "label.device!": "lo" }), key: prefixed("transmit errors ", "device") },
        { params: q("node_network_receive_drop_total", "rate", { group_by: "device", agg: "sum", "label.device!": "lo" }), key: prefixed("receive drops ", "device") },
        { params: q("node_network_transmit_drop_total", "rate", { group_by: "device", agg: "sum", "label.device!": "lo" }), key: prefixed("transmit drops ", "device") },
      ],
    },
    // Pressure (PSI): share of time some (or all) tasks waited for the resource.
    {
      id: "chart-pressure", title: "Pressure", unit: "percent", scale: 100,
      queries: [
        { params: q("node_pressure_cpu_waiting_seconds_total", "rate"), key: "cpu some" },
        { params: q("node_pressure_memory_waiting_seconds_total", "rate"), key: "memory some" },
        { params: q("node_pressure_memory_stalled_seconds_total", "rate"), key: "memory full" },
        { params: q("node_pressure_io_waiting_seconds_total", "rate"), key: "io some" },
        { params: q("node_pressure_io_stalled_seconds_total", "rate"), key: "io full" },
      ],
      order: ["cpu some", "memory some", "memory full", "io some", "io full"],
      empty: F.t("This host reports no pressure stall information (Linux 4.20+ with PSI enabled)."),
    },
  ];

  // ------------------------------------------------------------ state

  var state = {
    range: 900, // seconds shown
    step: 10,
    live: true,
    generation: 0, // bumped on every range change; stale responses are dropped
    winStart: 0,
    winEnd: 0,
  };

  // Steps the rollup tiers divide (docs/metrics.md), about 300 points per chart.
  var STEPS = [10, 15, 20, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400];
  function stepFor(range) {
    var want = range / 300;
    for (var i = 0; i < STEPS.length; i++) if (STEPS[i] >= want) return STEPS[i];
    return STEPS[STEPS.length - 1];
  }

  function nowSec() {
    return Date.now() / 1000;
  }

  function interval() {
    return hostInfo && F.isNum(hostInfo.interval) ? hostInfo.interval : 10;
  }

  // Two collect intervals without a sample (plus the half step a bucketed time can move)
  // are drawn as a gap: the agent did not report.
  function maxGap() {
    return Math.max(2 * interval(), state.step) + state.step / 2;
  }

  var range = new F.TimeRange({
    container: document.getElementById("range-picker"),
    defaultFrom: "now-15m",
    presets: [900, 3600, 21600, 86400, 604800],
    onChange: function () { loadAll(); },
  });

  // chart runtime objects
  var charts = CHARTS.map(function (spec) {
    var container = document.getElementById(spec.id);
    var section = container.closest("details");
    return {
      spec: spec,
      container: container,
      section: section,
      tc: new F.TimeChart(container, {
        unit: spec.unit, style: spec.style, range: range, seriesName: seriesName, empty: spec.empty || F.t("No data for {host} in this range.", { host: HOST }),
        hooks: [drawMaintenanceSpans, drawDeployMarks, drawAlertSpans],
      }),
      store: new Map(), // series key -> Map(ts_ms -> value)
      lastTs: new Map(), // series key -> last ts_ms
      plot: null,
      busy: false,
      pending: false,
      loaded: false,
    };
  });

  function visible(chart) {
    return !chart.section || chart.section.open;
  }

  // ------------------------------------------------------------ data

  function fetchQuery(query, start, end) {
    var params = {};
    Object.keys(query.params).forEach(function (k) { params[k] = query.params[k]; });
    params.start = Math.floor(start);
    // To the millisecond, not rounded up: a rate step point stamped after "now" would be
    // computed before its samples arrived and never gain a successor when they do.
    params.end = Math.floor(end * 1000) / 1000;
    params.step = state.step;
    if (params.fn === "rate" || params.fn === "increase") {
      // Grafana's $__rate_interval: a window of at least four collect intervals, so every
      // step's window holds two samples even when collects jitter around the step.
      params.window = Math.max(state.step + interval(), 4 * interval());
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
      if (chart.labels) chart.labels.set(key, s.labels || {});
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
    var cutoff = state.winStart * 1000;
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

  function compareKeys(spec) {
    var order = spec.order || [];
    return function (a, b) {
      var ia = order.indexOf(a), ib = order.indexOf(b);
      if (ia === -1) ia = order.length;
      if (ib === -1) ib = order.length;
      if (ia !== ib) return ia - ib;
      return a.localeCompare(b, undefined, { numeric: true });
    };
  }

  // The drawn series: stored ones (keys not starting with "_") and derived ones, as
  // Maps of ts seconds -> value.
  function drawnSeries(chart) {
    var out = new Map();
    chart.store.forEach(function (pts, key) {
      if (key.charAt(0) === "_") return;
      var m = new Map();
      pts.forEach(function (v, ts) { if (v !== null) m.set(ts / 1000, v); });
      out.set(key, m);
    });
    var derive = chart.spec.derive;
    if (derive) {
      var tsSet = new Set();
      chart.store.forEach(function (pts) { pts.forEach(function (_, ts) { tsSet.add(ts); }); });
      tsSet.forEach(function (ts) {
        var row = {};
        chart.store.forEach(function (p, k) { var v = p.get(ts); if (v !== undefined) row[k] = v; });
        var values = derive(row);
        Object.keys(values).forEach(function (k) {
          if (!out.has(k)) out.set(k, new Map());
          if (F.isNum(values[k])) out.get(k).set(ts / 1000, values[k]);
        });
      });
    }
    return out;
  }

  // ------------------------------------------------------------ rendering

  function render(chart) {
    if (state.live) {
      state.winEnd = nowSec();
      state.winStart = state.winEnd - state.range;
    }
    trim(chart);
    var maps = drawnSeries(chart);
    var keys = Array.from(maps.keys()).sort(compareKeys(chart.spec));
    if (!chart.loaded && !keys.length) return;
    chart.tc.draw(keys, maps, { start: state.winStart, end: state.winEnd }, maxGap());
    chart.plot = chart.tc.plot;
    if (chart.spec.id === "chart-fs-used" || chart.spec.id === "chart-fs-inodes") renderMounts();
  }

  // The filesystem table: the latest size, use and inodes of every mount.
  function latest(pts) {
    var bestTs = -Infinity, best = null;
    if (pts) pts.forEach(function (v, ts) { if (v !== null && ts > bestTs) { bestTs = ts; best = v; } });
    return best;
  }

  function renderMounts() {
    var table = document.getElementById("mounts-table");
    if (!table) return;
    var space = charts.filter(function (c) { return c.spec.id === "chart-fs-used"; })[0];
    var inodes = charts.filter(function (c) { return c.spec.id === "chart-fs-inodes"; })[0];
    var rows = [];
    space.store.forEach(function (pts, key) {
      if (key.indexOf("_size ") !== 0) return;
      var mount = key.slice(6);
      var size = latest(pts), avail = latest(space.store.get("_avail " + mount));
      var files = latest(inodes.store.get("_files " + mount)), ffree = latest(inodes.store.get("_ffree " + mount));
      var labels = (space.labels && space.labels.get(key)) || {};
      var used = size > 0 && avail !== null ? 1 - avail / size : null;
      var tr = F.el("tr");
      tr.dataset.mount = mount;
      F.td(tr, mount).className = "mount";
      F.td(tr, labels.device || "");
      F.td(tr, labels.fstype || "");
      F.td(tr, F.fmtBytes(size)).className = "num";
      F.td(tr, size !== null && avail !== null ? F.fmtBytes(size - avail) : "—").className = "num";
      F.td(tr, F.fmtBytes(avail)).className = "num";
      var cell = F.td(tr, F.fmtRatio(used));
      cell.className = "num" + (used >= 0.9 ? " state-firing" : used >= 0.8 ? " state-pending" : "");
      F.td(tr, files > 0 && ffree !== null ? F.fmtRatio(1 - ffree / files) : "—").className = "num";
      rows.push(tr);
    });
    rows.sort(function (a, b) { return a.dataset.mount.localeCompare(b.dataset.mount); });
    F.fillTable(table, rows, F.t("No filesystems reported in this range."));
  }

  // ------------------------------------------------------------ loading

  function reportChart(chart, err) {
    if (err) F.showError(chart.spec.id, F.t("{title} chart — ", { title: chart.spec.title }) + err.message);
    else F.clearError(chart.spec.id);
  }

  // Full load of the visible window.
  function loadChart(chart) {
    var gen = state.generation;
    var start = state.winStart, end = state.winEnd;
    chart.busy = true;
    chart.pending = false;
    chart.requested = gen;
    return Promise.all(chart.spec.queries.map(function (query) {
      return fetchQuery(query, start, end).then(function (series) { return [query, series]; });
    })).then(function (results) {
      if (gen !== state.generation) return;
      chart.store = new Map();
      chart.lastTs = new Map();
      chart.labels = new Map();
      results.forEach(function (r) { merge(chart, r[0], r[1], false); });
      chart.loaded = true;
      render(chart);
      reportChart(chart, null);
    }).catch(function (err) {
      if (gen !== state.generation) return;
      chart.loaded = true;
      render(chart);
      reportChart(chart, err);
      // A brief failure (a restart, a network change) should not leave the chart empty
      // until the next live frame: try again shortly.
      window.setTimeout(function () {
        if (gen === state.generation && visible(chart) && !chart.busy) loadChart(chart);
      }, RETRY_MS);
    }).then(function () {
      if (gen !== state.generation) return;
      chart.busy = false;
      if (chart.pending) updateChart(chart);
    });
  }

  // Incremental: fetch from (last point − 2 steps) to now, keep only newer points.
  function updateChart(chart) {
    if (!visible(chart) || !state.live) return;
    if (chart.busy) {
      chart.pending = true;
      return;
    }
    var last = chartLastTs(chart);
    if (!chart.loaded || chart.requested !== state.generation || last === -Infinity) {
      state.winEnd = nowSec();
      state.winStart = state.winEnd - state.range;
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
    var w = range.window();
    state.winStart = w.start;
    state.winEnd = w.end;
    state.live = w.live;
    state.range = w.end - w.start;
    state.step = stepFor(state.range);
    root.dataset.from = range.from;
    root.dataset.to = range.to;
    charts.forEach(function (chart) {
      chart.busy = false;
      chart.pending = false;
      if (visible(chart)) loadChart(chart);
    });
    loadDeployMarks();
    loadAlertSpans();
    loadMaintenanceSpans();
  }

  // Which sections are open is kept in the browser, for every host page alike.
  var SECTIONS_KEY = "fleetdeck.hostSections";
  var sections = Array.prototype.slice.call(root.querySelectorAll("details.host-section"));
  try {
    var saved = JSON.parse(window.localStorage.getItem(SECTIONS_KEY) || "null");
    if (saved && typeof saved === "object") {
      sections.forEach(function (section) {
        if (typeof saved[section.id] === "boolean") section.open = saved[section.id];
      });
    }
  } catch (e) { /* storage disabled or unreadable: the template's defaults */ }

  function saveSections() {
    var open = {};
    sections.forEach(function (section) { open[section.id] = section.open; });
    try { window.localStorage.setItem(SECTIONS_KEY, JSON.stringify(open)); } catch (e) { /* storage disabled */ }
  }

  // A section's charts load when it is first opened, and again on a range change.
  sections.forEach(function (section) {
    section.addEventListener("toggle", function () {
      saveSections();
      if (!section.open) return;
      if (state.live) {  // a live range has moved on since the page loaded
        state.winEnd = nowSec();
        state.winStart = state.winEnd - state.range;
      }
      charts.forEach(function (chart) {
        if (chart.section === section && chart.requested !== state.generation) loadChart(chart);
      });
    });
  });

  // ------------------------------------------------------------ deploy markers

  // Deploys of the apps that list this host (apps.<name>.hosts), drawn as dashed
  // vertical lines at their start: green succeeded, red failed or rolled back, blue running.
  var deployMarks = [];
  var MARK_COLORS = { succeeded: "#73bf69", running: "#5794f2", queued: "#5794f2", cancelled: "#9fa7b3" };

  function loadDeployMarks() {
    var since = Math.floor(state.winStart);
    return F.fetchJSON("/api/v1/deploys?" + F.query({ host: HOST, since: since, limit: 200 })).then(function (body) {
      deployMarks = body.deploys.map(function (d) {
        return { ts: d.started_at || d.created_at, state: d.state, label: d.app + " " + d.version };
      });
      root.dataset.deployMarkers = String(deployMarks.length);
      root.title = deployMarks.length ? F.t("Deploys: ") + deployMarks.map(function (m) { return m.label + " (" + F.term(m.state) + ")"; }).join(", ") : "";
      charts.forEach(function (chart) { if (chart.plot) chart.plot.redraw(false); });
      deployMarksFailed = false;
      F.clearError("deploy-markers");
    }).catch(function (err) {
      deployMarksFailed = true;  // tried again with the next chart update, which clears the banner
      F.showError("deploy-markers", F.t("Deploy markers — ") + err.message);
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
      // A deploy near the range's end: the label goes left of its line, inside the plot.
      if (x + 3 + label.offsetWidth > u.over.clientWidth) {
        label.style.left = Math.max(0, Math.round(x) - 3 - label.offsetWidth) + "px";
      }
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
    var since = Math.floor(state.winStart);
    var until = Math.ceil(state.winEnd);
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
      F.showError("alert-spans", F.t("Alert markers — ") + err.message);
    });
  }

  // Each span's alert name as text over the plot (u.over, CSS pixels), at the foot of its
  // start; rows alternate so that neighbouring alerts do not overprint each other (deploy
  // labels sit at the top).
  function labelAlertSpans(u) {
    Array.prototype.slice.call(u.over.querySelectorAll(".alert-label")).forEach(function (n) { n.remove(); });
    alertSpans.forEach(function (span, i) {
      var x = Math.max(0, u.valToPos(span.from, "x"));
      var end = u.valToPos(span.to === null ? nowSec() : span.to, "x");
      if (!(x <= u.over.clientWidth) || !(end >= 0) || end <= x) return;
      var label = F.el("span", "alert-label", span.label);
      label.style.left = Math.round(x) + 3 + "px";
      label.style.top = Math.max(0, u.over.clientHeight - 14 - (i % 2) * 14) + "px";
      u.over.appendChild(label);
      if (x + 3 + label.offsetWidth > u.over.clientWidth) {  // near the range's end: left of its start
        label.style.left = Math.max(0, Math.round(x) - 3 - label.offsetWidth) + "px";
      }
    });
  }

  function drawAlertSpans(u) {
    labelAlertSpans(u);
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
    var start = Math.floor(state.winStart);
    var end = Math.ceil(state.winEnd);
    return F.fetchJSON("/api/v1/maintenance/windows?" + F.query({ host: HOST, start: start, end: end })).then(function (body) {
      maintenanceSpans = [];
      body.windows.forEach(function (w) {
        (w.occurrences || []).forEach(function (o) { maintenanceSpans.push({ from: o.start, to: o.end, label: w.name }); });
      });
      root.dataset.maintenanceSpans = String(maintenanceSpans.length);
      charts.forEach(function (chart) { if (chart.plot) chart.plot.redraw(false); });
      F.clearError("maintenance-spans");
    }).catch(function (err) {
      F.showError("maintenance-spans", F.t("Maintenance windows — ") + err.message);
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
      F.setText("host-last-seen", F.t("never"));
      return;
    }
    var up = hostInfo.up === true;
    badge.className = "badge " + (up ? "up" : "down");
    F.setText(badge, up ? F.t("UP") : F.t("DOWN"));
    F.setText("host-agent", hostInfo.agent_version || "—");
    F.renderLabels(document.getElementById("host-labels"), hostInfo.labels);
    renderLastSeen();
    renderRejected();
  }

  // Samples the console refused from this host (GET /api/v1/hosts "rejected": one row per
  // reason with its running count, last time and last example) whose last refusal is within
  // the last hour: an agent over its series cap loses those series silently otherwise.
  var REJECTED_WINDOW_S = 3600;
  var REJECTED_REASONS = {
    series_limit: F.t("new series over the host's series cap (max_series_per_host)"),
    too_old: F.t("samples older than the ingest window"),
    too_new: F.t("samples ahead of the console's clock"),
    non_finite: F.t("NaN or infinite values"),
    log_too_old: F.t("log records older than the log retention"),
  };

  function renderRejected() {
    var box = document.getElementById("host-rejected");
    var now = nowSec();
    var recent = ((hostInfo && hostInfo.rejected) || []).filter(function (r) {
      return r && F.isNum(r.last_at) && now - r.last_at <= REJECTED_WINDOW_S;
    });
    box.textContent = "";
    box.hidden = recent.length === 0;
    if (!recent.length) return;
    var head = document.createElement("strong");
    head.textContent = F.t("The console refused data from this host in the last hour:");
    var list = document.createElement("ul");
    recent.forEach(function (r) {
      var item = document.createElement("li");
      item.className = "rejected-" + r.reason;
      var reason = document.createElement("strong");
      reason.textContent = r.reason;
      var why = REJECTED_REASONS[r.reason];
      item.appendChild(reason);
      item.appendChild(document.createTextNode((why ? " (" + why + ")" : "") + " — "));
      if (r.example) {
        var example = document.createElement("code");
        example.textContent = r.example;
        item.appendChild(example);
        item.appendChild(document.createTextNode(" "));
      }
      var when = document.createElement("span");
      when.title = F.fmtDateTime(r.last_at);
      when.textContent = F.t("{count} refused in total, last {ago}", { count: r.count, ago: F.fmtAgo(r.last_at) });
      item.appendChild(when);
      list.appendChild(item);
    });
    box.appendChild(head);
    box.appendChild(list);
  }

  function renderLastSeen() {
    var node = document.getElementById("host-last-seen");
    if (!hostInfo || !F.isNum(hostInfo.last_seen)) {
      F.setText(node, F.t("never"));
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
      var was = interval();
      hostInfo = hosts.filter(function (h) { return h && h.host === HOST; })[0] || null;
      renderHeader();
      // The rate window and the gap threshold follow the agent's collect interval: charts
      // loaded before it was known (or before it changed) are loaded again with it.
      if (interval() !== was) loadAll();
      F.clearError("host");
    }).catch(function (err) {
      F.showError("host", F.t("Could not load host status — ") + err.message);
    }).then(function () {
      headerBusy = false;
    });
  }

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
      F.setText("live-status", s === "open" ? F.t("connected") : s === "closed" ? F.t("reconnecting…") : F.t("connecting…"));
      var node = document.getElementById("live-status");
      if (node) node.className = "live-" + s;
      if (s === "closed") wasClosed = true;
      if (s === "open" && wasClosed) {
        wasClosed = false;
        updateAll(); // catch up on what was missed while disconnected
      }
    },
  });

  // ------------------------------------------------------------ timers

  window.setInterval(renderLastSeen, 1000);
  window.setInterval(loadHeader, HEADER_POLL_MS);
  window.setInterval(updateAll, FALLBACK_POLL_MS);
  window.setInterval(function () {  // new deploys, alerts and windows appear without a reload
    if (!state.live) return;
    state.winEnd = nowSec();
    state.winStart = state.winEnd - state.range;
    loadDeployMarks();
    loadAlertSpans();
    loadMaintenanceSpans();
  }, HEADER_POLL_MS);
  document.addEventListener("visibilitychange", function () {
    if (!document.hidden) {
      updateAll();
      loadHeader();
    }
  });

  loadHeader();
  loadAll();
})();
