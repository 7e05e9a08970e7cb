/* Fleetdeck time charts: the page's time range (picker, URL, zoom) and uPlot charts that
 * share it. Loaded after uPlot and common.js; adds Fleetdeck.TimeRange and
 * Fleetdeck.TimeChart.
 *
 * The range lives in the URL as ?from=&to=, Grafana's syntax: "now-15m", "now-6h", "now"
 * (relative, the page follows live data) or Unix seconds (absolute: a custom range or a
 * zoom). A drag on any chart zooms every chart of the page (they redraw for the new
 * range); "Reset zoom" or a double click goes back to the range before the first zoom.
 */
(function () {
  "use strict";
  var F = window.Fleetdeck;
  var P = window.FleetdeckPrefs;

  var UNITS = { s: 1, m: 60, h: 3600, d: 86400, w: 604800 };
  var PRESETS = [
    [300, "5 m"], [900, "15 m"], [3600, "1 h"], [10800, "3 h"], [21600, "6 h"], [43200, "12 h"],
    [86400, "24 h"], [172800, "2 d"], [604800, "7 d"],
  ];

  // "now", "now-15m", "now-1h30m" -> seconds before now (0 for "now"); else null.
  function relativeSeconds(text) {
    var m = /^now(?:-((?:\d+[smhdw])+))?$/.exec(String(text).trim());
    if (!m) return null;
    if (!m[1]) return 0;
    var total = 0;
    m[1].replace(/(\d+)([smhdw])/g, function (_, n, u) { total += Number(n) * UNITS[u]; return ""; });
    return total;
  }

  function durationText(seconds) {
    var parts = [];
    [["d", 86400], ["h", 3600], ["m", 60], ["s", 1]].forEach(function (u) {
      if (seconds >= u[1]) {
        parts.push(Math.floor(seconds / u[1]) + u[0]);
        seconds %= u[1];
      }
    });
    return parts.join("") || "0s";
  }

  // A bound of the range -> Unix seconds at `now`; NaN when unreadable.
  function resolve(bound, now) {
    var rel = relativeSeconds(bound);
    if (rel !== null) return now - rel;
    if (/^\d+(\.\d+)?$/.test(String(bound))) return Number(bound);
    return P.parseDateTime(bound);
  }

  // ------------------------------------------------------------ TimeRange

  // TimeRange({container, defaultFrom: "now-15m", presets: [seconds...], onChange: fn(range)})
  // Renders the picker into `container` and reads/writes ?from=&to= (keeping other parameters).
  function TimeRange(opts) {
    this.container = opts.container;
    this.defaultFrom = opts.defaultFrom || "now-15m";
    this.onChange = opts.onChange || function () {};
    this.presets = PRESETS.filter(function (p) { return !opts.presets || opts.presets.indexOf(p[0]) !== -1; });
    this.zoomStack = []; // [from, to] before each zoom
    var params = new URLSearchParams(window.location.search);
    var legacy = /(?:^#|&)range=(\d+[smhd])/.exec(window.location.hash); // the host page's old #range=1h
    this.from = params.get("from") || (legacy ? "now-" + legacy[1] : this.defaultFrom);
    this.to = params.get("to") || "now";
    if (!this.valid(this.from, this.to)) {
      this.from = this.defaultFrom;
      this.to = "now";
    }
    this.render();
  }

  TimeRange.prototype.valid = function (from, to) {
    var now = Date.now() / 1000;
    var a = resolve(from, now), b = resolve(to, now);
    return isFinite(a) && isFinite(b) && a < b;
  };

  // {start, end} in Unix seconds, `live` while the end is "now".
  TimeRange.prototype.window = function () {
    var now = Date.now() / 1000;
    return { start: resolve(this.from, now), end: resolve(this.to, now), live: relativeSeconds(this.to) === 0 };
  };

  TimeRange.prototype.seconds = function () {
    var w = this.window();
    return w.end - w.start;
  };

  TimeRange.prototype.set = function (from, to, how) {
    if (!this.valid(from, to)) return false;
    if (how === "zoom") this.zoomStack.push([this.from, this.to]);
    else if (how !== "reset") this.zoomStack = [];
    this.from = String(from);
    this.to = String(to);
    this.writeURL();
    this.render();
    this.onChange(this);
    return true;
  };

  TimeRange.prototype.zoom = function (start, end) {
    if (!(end - start >= 1)) return;
    this.set(String(Math.floor(start)), String(Math.ceil(end)), "zoom");
  };

  TimeRange.prototype.reset = function () {
    if (!this.zoomStack.length) return;
    var first = this.zoomStack[0];
    this.zoomStack = [];
    this.set(first[0], first[1], "reset");
  };

  TimeRange.prototype.writeURL = function () {
    var params = new URLSearchParams(window.location.search);
    if (this.from === this.defaultFrom && this.to === "now") {
      params.delete("from");
      params.delete("to");
    } else {
      params.set("from", this.from);
      params.set("to", this.to);
    }
    var qs = params.toString();
    window.history.replaceState(null, "", window.location.pathname + (qs ? "?" + qs : ""));
  };

  // Extra URL parameters a page keeps beside the range (explore: query, view).
  TimeRange.prototype.setParams = function (values) {
    var params = new URLSearchParams(window.location.search);
    Object.keys(values).forEach(function (k) {
      if (values[k] === null || values[k] === undefined || values[k] === "") params.delete(k);
      else params.set(k, values[k]);
    });
    var qs = params.toString();
    window.history.replaceState(null, "", window.location.pathname + (qs ? "?" + qs : ""));
  };

  TimeRange.prototype.render = function () {
    var self = this;
    var c = self.container;
    if (!c) return;
    if (!c.dataset.built) {
      c.dataset.built = "1";
      c.textContent = "";
      c.setAttribute("role", "group");
      c.setAttribute("aria-label", F.t("Time range"));
      self.presets.forEach(function (p) {
        var b = F.el("button", "btn range-btn", p[1]);
        b.type = "button";
        b.dataset.range = String(p[0]);
        b.addEventListener("click", function () { self.set("now-" + durationText(p[0]), "now"); });
        c.appendChild(b);
      });
      var custom = F.el("button", "btn range-custom-btn", F.t("Custom"));
      custom.type = "button";
      custom.id = "range-custom-toggle";
      c.appendChild(custom);
      var reset = F.el("button", "btn btn-primary", F.t("Reset zoom"));
      reset.type = "button";
      reset.id = "zoom-reset";
      reset.addEventListener("click", function () { self.reset(); });
      c.appendChild(reset);
      var label = F.el("span", "range-label muted", "");
      label.id = "range-label";
      c.appendChild(label);

      var form = F.el("form", "range-form");
      form.id = "range-form";
      form.hidden = true;
      var from = F.el("input");
      from.type = "text";
      from.id = "range-from";
      from.setAttribute("aria-label", F.t("From"));
      from.placeholder = F.t("now-2h or 2026-01-31 08:00");
      var to = F.el("input");
      to.type = "text";
      to.id = "range-to";
      to.setAttribute("aria-label", F.t("To"));
      to.placeholder = "now";
      var apply = F.el("button", "btn btn-primary", F.t("Apply"));
      apply.type = "submit";
      var msg = F.el("span", "range-form-error", "");
      msg.id = "range-form-error";
      form.appendChild(F.el("label", "", F.t("From")));
      form.appendChild(from);
      form.appendChild(F.el("label", "", F.t("To")));
      form.appendChild(to);
      form.appendChild(apply);
      form.appendChild(msg);
      c.appendChild(form);
      custom.addEventListener("click", function () {
        form.hidden = !form.hidden;
        custom.setAttribute("aria-expanded", form.hidden ? "false" : "true");
        from.value = self.display(self.from);
        to.value = self.display(self.to);
        if (!form.hidden) from.focus();
      });
      form.addEventListener("submit", function (e) {
        e.preventDefault();
        var f = self.canonical(from.value), t = self.canonical(to.value);
        if (f === null || t === null || !self.set(f, t)) {
          msg.textContent = F.t("Use now, now-15m, now-2h, … or YYYY-MM-DD HH:MM; From must be before To.");
          return;
        }
        msg.textContent = "";
        form.hidden = true;
      });
      document.addEventListener("fleetdeck:timezone", function () { self.render(); });
    }
    var w = self.window();
    var rel = relativeSeconds(self.from);
    Array.prototype.forEach.call(c.querySelectorAll(".range-btn"), function (b) {
      var on = w.live && rel !== null && Number(b.dataset.range) === rel;
      b.setAttribute("aria-pressed", on ? "true" : "false");
    });
    document.getElementById("zoom-reset").hidden = self.zoomStack.length === 0;
    var label = document.getElementById("range-label");
    var preset = w.live && self.presets.some(function (p) { return p[0] === rel; });
    label.textContent = preset ? "" : self.display(self.from) + " → " + self.display(self.to);
    c.dataset.from = self.from;
    c.dataset.to = self.to;
  };

  // A bound as typed in the form: relative as is, absolute in the page's time format.
  TimeRange.prototype.display = function (bound) {
    if (relativeSeconds(bound) !== null) return bound;
    return F.fmtDateTime(resolve(bound, Date.now() / 1000));
  };

  // A typed bound -> its URL form ("now-2h", or Unix seconds); null when unreadable.
  TimeRange.prototype.canonical = function (text) {
    text = String(text).trim();
    if (relativeSeconds(text) !== null) return text;
    var s = P.parseDateTime(text);
    return isFinite(s) ? String(Math.round(s)) : null;
  };

  // ------------------------------------------------------------ gaps

  // Columns for uPlot from series given as Maps (ts seconds -> value). Where a series has
  // no point between two of its own points more than `maxGap` seconds apart, a null is
  // placed (uPlot breaks the line there: the host stopped reporting); where it merely
  // lacks a timestamp another series has, the value is undefined, which uPlot spans.
  function alignWithGaps(seriesList, maxGap) {
    var tsSet = new Set();
    var owns = seriesList.map(function (pts) {
      var own = Array.from(pts.keys()).sort(function (a, b) { return a - b; });
      own.forEach(function (ts) { tsSet.add(ts); });
      for (var i = 1; i < own.length; i++) {
        if (own[i] - own[i - 1] > maxGap) tsSet.add((own[i] + own[i - 1]) / 2); // a place for the null
      }
      return own;
    });
    var xs = Array.from(tsSet).sort(function (a, b) { return a - b; });
    var cols = [xs];
    seriesList.forEach(function (pts, si) {
      var own = owns[si];
      var j = 0; // own[j - 1] < x <= own[j]
      cols.push(xs.map(function (x) {
        while (j < own.length && own[j] < x) j++;
        if (pts.has(x)) return pts.get(x);
        if (j > 0 && j < own.length && own[j] - own[j - 1] > maxGap) return null;
        return undefined;
      }));
    });
    return cols;
  }

  // ------------------------------------------------------------ TimeChart

  var PALETTE = ["#5794f2", "#73bf69", "#f2cc0c", "#ff780a", "#f2495c", "#b877d9", "#8ab8ff", "#37872d", "#fade2a", "#705da0",
                 "#1f78c1", "#e0752d", "#64b0c8", "#cca300", "#806eb7"];

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

  function axisSize(u, values) {
    if (!values) return 50;
    var longest = values.reduce(function (m, v) { return Math.max(m, String(v).length); }, 0);
    return Math.max(84, Math.ceil(longest * 7.2) + 18); // equal widths keep the panels aligned
  }

  function lastValue(u, sidx) {
    var ys = u.data[sidx] || [];
    for (var i = ys.length - 1; i >= 0; i--) if (ys[i] != null) return ys[i];
    return null;
  }

  var charts = []; // every TimeChart of the page, for theme and zone changes

  // TimeChart(container, {unit, height, style: fn(key, i) -> {stroke, fill, width, dash, show},
  //   range: TimeRange, empty: "text when there is no data", seriesName: fn(key) -> legend text})
  // draw(keys, seriesMaps, window, maxGap): series Maps of ts seconds -> value.
  function TimeChart(container, opts) {
    this.container = container;
    this.opts = opts;
    this.plot = null;
    this.keySig = "";
    this.status = container.querySelector(".chart-empty");
    if (!this.status) {
      this.status = F.el("p", "chart-empty", F.t("Loading…"));
      container.appendChild(this.status);
    }
    this.win = { start: 0, end: 1 };
    this.data = null;
    this.keys = [];
    this.hooks = opts.hooks || [];
    container.title = F.t("Drag to zoom every chart, double-click to reset");
    charts.push(this);
    var self = this;
    if (window.ResizeObserver) {
      var lastWidth = 0;
      new ResizeObserver(function () {
        window.requestAnimationFrame(function () {
          var w = container.clientWidth;
          if (!self.plot || w === lastWidth) return;
          lastWidth = w;
          self.plot.setSize({ width: Math.max(160, w), height: self.height() });
        });
      }).observe(container);
    }
  }

  TimeChart.prototype.height = function () {
    return this.opts.height || (window.innerWidth < 700 ? 200 : 240);
  };

  TimeChart.prototype.message = function (text) {
    this.status.textContent = text;
    this.status.hidden = !text;
  };

  TimeChart.prototype.options = function (keys) {
    var self = this;
    var opts = self.opts;
    var fmt = FORMATS[opts.unit] || F.fmtNumber;
    var series = [{
      label: F.t("Time"),
      value: function (u, v) { return v == null ? F.t("latest") : F.fmtDateTime(v); },
    }];
    keys.forEach(function (key, i) {
      var st = opts.style ? opts.style(key, i) || {} : {};
      series.push({
        label: opts.seriesName ? opts.seriesName(key) : key,
        stroke: st.stroke || PALETTE[i % PALETTE.length],
        fill: st.fill,
        width: st.width || 1.5,
        dash: st.dash,
        show: st.show !== false,
        points: { show: function (u) { return u.data[0].length <= 6; } },
        value: function (u, v, sidx, idx) {
          if (idx == null) v = lastValue(u, sidx);
          return v == null ? "—" : fmt(v);
        },
      });
    });
    var axisColor = function () { return F.themeColor("--axis"); };
    var gridColor = function () { return F.themeColor("--grid"); };
    var yAxis = {
      stroke: axisColor,
      grid: { stroke: gridColor, width: 1 },
      ticks: { stroke: gridColor, width: 1 },
      values: function (u, splits) { return splits.map(fmt); },
      size: axisSize,
    };
    if (opts.unit === "bytes" || opts.unit === "bytesRate") yAxis.incrs = IEC_INCRS;
    return {
      width: Math.max(160, self.container.clientWidth),
      height: self.height(),
      series: series,
      tzDate: F.uplotTzDate,
      scales: {
        x: { time: true, range: function () { return [self.win.start, self.win.end]; } },
        y: {
          range: function (u, min, max) {
            if (min == null || max == null) return [0, opts.unit === "percent" ? 100 : 1];
            var lo = Math.min(0, min);
            var hi = max > 0 ? max * 1.08 : 1;
            if (opts.unit === "percent") hi = Math.max(hi, 5);
            return [lo, hi];
          },
        },
      },
      axes: [
        { stroke: axisColor, grid: { stroke: gridColor, width: 1 }, ticks: { stroke: gridColor, width: 1 }, values: F.TIME_AXIS_VALUES },
        yAxis,
      ],
      legend: { live: true },
      cursor: {
        sync: { key: "fleetdeck" }, // the crosshair moves on every chart of the page
        drag: { x: true, y: false, setScale: false },
        bind: {
          dblclick: function () {
            return function () {
              if (opts.range) opts.range.reset();
              return null;
            };
          },
        },
      },
      hooks: {
        draw: self.hooks,
        setSelect: [function (u) {
          if (u.select.width < 5) return;
          var min = u.posToVal(u.select.left, "x");
          var max = u.posToVal(u.select.left + u.select.width, "x");
          u.setSelect({ left: 0, width: 0, top: 0, height: 0 }, false);
          if (opts.range) opts.range.zoom(min, max);
        }],
      },
    };
  };

  // Draw `keys` (in this order) from `maps` (key -> Map(ts seconds -> value)) over
  // `win` {start, end}; a series' own gaps over `maxGap` seconds are drawn as gaps.
  TimeChart.prototype.draw = function (keys, maps, win, maxGap) {
    this.win = { start: win.start, end: win.end };
    this.keys = keys;
    var data = alignWithGaps(keys.map(function (k) { return maps.get(k) || new Map(); }), maxGap);
    this.data = data;
    var sig = JSON.stringify(keys);
    if (this.plot && this.keySig !== sig) {
      this.plot.destroy();
      this.plot = null;
    }
    var n = data[0].length;
    this.container.dataset.points = String(keys.length ? data.slice(1).reduce(function (m, col) {
      return Math.max(m, col.filter(function (v) { return v != null; }).length);
    }, 0) : 0);
    this.container.dataset.series = String(keys.length);
    this.container.dataset.gaps = String(data.slice(1).reduce(function (m, col) {
      return m + col.filter(function (v) { return v === null; }).length;
    }, 0));
    // Where the first series breaks (x in Unix seconds), for a reader of the page's state.
    this.container.dataset.gapAt = keys.length ? data[1].map(function (v, i) { return v === null ? data[0][i] : null; })
      .filter(function (x) { return x !== null; }).map(Math.round).join(",") : "";
    this.container.dataset.xmin = String(Math.round(win.start));
    this.container.dataset.xmax = String(Math.round(win.end));
    if (!keys.length) {
      this.message(this.opts.empty || F.t("No data in this range."));
      return;
    }
    if (!this.plot) {
      this.plot = new uPlot(this.options(keys), data, this.container);
      this.keySig = sig;
    } else {
      this.plot.setData(data, true);
    }
    this.message(n === 0 ? (this.opts.empty || F.t("No data in this range.")) : "");
  };

  TimeChart.prototype.redraw = function () {
    if (this.plot) this.plot.redraw(false);
  };

  TimeChart.prototype.rebuild = function () {
    if (!this.plot) return;
    this.plot.destroy();
    this.plot = new uPlot(this.options(this.keys), this.data, this.container);
  };

  document.addEventListener("fleetdeck:theme", function () {
    charts.forEach(function (c) { c.rebuild(); });
  });
  document.addEventListener("fleetdeck:timezone", function () {
    charts.forEach(function (c) { c.rebuild(); });
  });

  F.TimeRange = TimeRange;
  F.TimeChart = TimeChart;
  F.alignWithGaps = alignWithGaps;
  F.CHART_PALETTE = PALETTE;
  F.relativeSeconds = relativeSeconds;
})();
