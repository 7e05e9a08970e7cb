/* Fleetdeck overview: a card per host from GET /api/v1/hosts, refreshed every
 * 5 s and whenever a live frame for one of the shown hosts arrives. */
(function () {
  "use strict";
  var F = window.Fleetdeck;
  var REFRESH_MS = 5000;
  var MIN_GAP_MS = 1000; // coalesce bursts of live frames

  var grid = document.getElementById("hosts");
  var empty = document.getElementById("hosts-empty");
  var cards = new Map(); // host name -> {root, refs, data}
  var inFlight = false;
  var pending = false;
  var lastFetch = 0;
  var pollTimer = null;
  var live = null;

  F.setText("console-url", window.location.origin);

  function levelClass(ratio) {
    if (!F.isNum(ratio)) return "lvl-none";
    if (ratio >= 0.9) return "lvl-crit";
    if (ratio >= 0.75) return "lvl-warn";
    return "lvl-ok";
  }

  function metricRow(label, id) {
    var row = F.el("div", "metric-row");
    var name = F.el("span", "metric-label", label);
    var value = F.el("span", "metric-value", "—");
    var meter = document.createElement("meter");
    meter.className = "metric-meter";
    meter.min = 0;
    meter.max = 1;
    meter.low = 0.75;
    meter.high = 0.9;
    meter.optimum = 0;
    meter.value = 0;
    meter.setAttribute("aria-label", label);
    row.appendChild(name);
    row.appendChild(value);
    row.appendChild(meter);
    return { row: row, label: name, value: value, meter: meter, id: id };
  }

  function createCard(name) {
    var root = document.createElement("a");
    root.className = "host-card";
    root.dataset.host = name;
    root.href = "/hosts/" + encodeURIComponent(name);

    var head = F.el("div", "host-card-head");
    var title = F.el("h2", "host-name", name);
    title.title = name;
    var badge = F.el("span", "badge", "…");
    head.appendChild(title);
    head.appendChild(badge);

    var metrics = F.el("div", "host-metrics");
    var cpu = metricRow(F.t("CPU"), "cpu");
    var mem = metricRow(F.t("Memory"), "memory");
    var disk = metricRow(F.t("Disk (worst)"), "disk");
    [cpu, mem, disk].forEach(function (m) { metrics.appendChild(m.row); });
    var loadRow = F.el("div", "metric-row metric-row-plain");
    loadRow.appendChild(F.el("span", "metric-label", F.t("Load 1m")));
    var loadValue = F.el("span", "metric-value", "—");
    loadRow.appendChild(loadValue);
    metrics.appendChild(loadRow);

    var agentHealth = F.el("div", "agent-health unknown", "");

    var labels = F.el("div", "host-labels");
    var alerts = F.el("div", "host-alerts");  // firing alerts of this host (renderAlerts)
    alerts.hidden = true;

    var foot = F.el("div", "host-card-foot");
    var seen = F.el("span", "last-seen", "");
    var version = F.el("span", "agent-version", "");
    foot.appendChild(seen);
    foot.appendChild(version);
    var drift = F.el("span", "drift-badge", F.t("DRIFT"));
    drift.hidden = true;
    foot.appendChild(drift);
    // The agent's clock is off the console's: its samples and lines are stamped wrong.
    var skew = F.el("span", "skew-badge", F.t("CLOCK"));
    skew.hidden = true;
    foot.appendChild(skew);

    root.appendChild(head);
    root.appendChild(metrics);
    root.appendChild(agentHealth);
    root.appendChild(labels);
    root.appendChild(alerts);
    root.appendChild(foot);
    return {
      root: root,
      refs: { badge: badge, cpu: cpu, mem: mem, disk: disk, load: loadValue, seen: seen, version: version, labels: labels,
              agentHealth: agentHealth, drift: drift, skew: skew, alerts: alerts },
      data: null,
    };
  }

  // Signed clock offset, e.g. "-1d 0h", "+12m", "-45s".
  function fmtSkew(seconds) {
    if (!F.isNum(seconds)) return "";
    var sign = seconds < 0 ? "-" : "+";
    var a = Math.abs(seconds);
    if (a >= 86400) return sign + Math.floor(a / 86400) + "d " + Math.floor((a % 86400) / 3600) + "h";
    if (a >= 3600) return sign + Math.floor(a / 3600) + "h " + Math.floor((a % 3600) / 60) + "m";
    if (a >= 60) return sign + Math.floor(a / 60) + "m";
    return sign + Math.round(a) + "s";
  }

  function setMeter(m, ratio, text) {
    F.setText(m.value, text);
    m.value.className = "metric-value " + levelClass(ratio);
    m.meter.value = F.isNum(ratio) ? Math.max(0, Math.min(1, ratio)) : 0;
  }

  // A problem of the agent's health in the page's language: the API words them in English
  // (console/query/agent_health.py, console/query/service.py); one left unmatched stays so.
  function problemText(p) {
    var m, parts = p.split("; its last report said ");
    if (parts.length === 2) return problemText(parts[0]) + F.t("; its last report said {status}", { status: F.term(parts[1]) });
    if (p === "never reported") return F.t("never reported");
    if ((m = /^no report for (\d+) s$/.exec(p))) return F.t("no report for {n} s", { n: m[1] });
    if ((m = /^collector failing: (.+)$/.exec(p))) return F.t("collector failing: {names}", { names: m[1] });
    if ((m = /^(\d+) batches queued$/.exec(p))) return F.t("{n} batches queued", { n: m[1] });
    if ((m = /^(\d+) samples dropped$/.exec(p))) return F.t("{n} samples dropped", { n: m[1] });
    if ((m = /^(\d+) batches refused$/.exec(p))) return F.t("{n} batches refused", { n: m[1] });
    if ((m = /^(\d+) torn spool records$/.exec(p))) return F.t("{n} torn spool records", { n: m[1] });
    if ((m = /^agent token refused \(revoked or expired\): (\d+) attempt\(s\); data waits in the agent's spool$/.exec(p))) {
      return F.t("agent token refused (revoked or expired): {n} attempt(s); data waits in the agent's spool", { n: m[1] });
    }
    return p;
  }

  // The agent's own health from its self-metrics (spool backlog, drops, send errors).
  function renderAgentHealth(node, health) {
    var status = (health && health.status) || "unknown";
    node.className = "agent-health " + status;
    // A down host's health is "unknown" with why (console/query/service.py): never "healthy".
    var problems = (health && health.problems) || [];
    var text = status === "ok" ? F.t("Agent healthy")
      : problems.length ? F.t("Agent: ") + problems.map(problemText).join(F.t("; ")) : F.t("Agent health unknown");
    F.setText(node, text);
    var details = [];
    if (health && F.isNum(health.batches_queued)) details.push(F.t("queued batches: ") + health.batches_queued);
    if (health && F.isNum(health.spool_bytes)) details.push(F.t("spool: ") + F.fmtBytes(health.spool_bytes));
    if (health && health.send_errors) {
      Object.keys(health.send_errors).forEach(function (code) {
        details.push(F.t("send errors {code}: ", { code: code }) + health.send_errors[code]);
      });
    }
    node.title = details.join("\n");
  }

  function renderSeen(card) {
    var h = card.data;
    var text = h && F.isNum(h.last_seen) ? F.t("last seen {ago}", { ago: F.fmtAgo(h.last_seen) }) : F.t("never seen");
    F.setText(card.refs.seen, text);
    card.refs.seen.title = h && F.isNum(h.last_seen) ? F.fmtDateTime(h.last_seen) : "";
  }

  function updateCard(card, h) {
    card.data = h;
    var s = h.summary || {};
    var up = h.up === true;
    card.root.classList.toggle("is-down", !up);
    card.refs.badge.className = "badge " + (up ? "up" : "down");
    F.setText(card.refs.badge, up ? F.t("UP") : F.t("DOWN"));
    setMeter(card.refs.cpu, s.cpu_ratio, F.fmtRatio(s.cpu_ratio));
    setMeter(card.refs.mem, s.memory_ratio, F.fmtRatio(s.memory_ratio));
    setMeter(card.refs.disk, s.disk_max_ratio, F.fmtRatio(s.disk_max_ratio));
    // Which filesystem is the fullest: its mount point beside the ratio.
    var mount = s.disk_max_mountpoint || "";
    F.setText(card.refs.disk.label, mount ? F.t("Disk {mount}", { mount: mount }) : F.t("Disk (worst)"));
    card.refs.disk.label.title = mount ? F.t("the fullest filesystem, mounted at {mount}", { mount: mount }) : F.t("the fullest filesystem");
    F.setText(card.refs.load, F.fmtNumber(s.load1));
    F.setText(card.refs.version, h.agent_version ? F.t("agent {version}", { version: h.agent_version }) : "");
    card.root.classList.toggle("has-drift", h.drift === true);
    card.refs.drift.hidden = h.drift !== true;
    card.refs.drift.title = h.drift ? F.t("differs from the fleet: ") + (h.drift_fields || []).join(", ") : "";
    card.refs.version.title = h.agent_version || "";
    card.refs.skew.hidden = h.clock_skewed !== true;
    F.setText(card.refs.skew, h.clock_skewed ? F.t("CLOCK {skew}", { skew: fmtSkew(h.clock_skew_seconds) })
      : F.t("CLOCK"));
    card.refs.skew.title = h.clock_skewed ? "the agent's clock is " + fmtSkew(h.clock_skew_seconds)
      + " off the console's (from its batches' sent_at); its samples and lines are stamped that far off" : "";
    F.renderLabels(card.refs.labels, h.labels);
    renderAgentHealth(card.refs.agentHealth, h.agent_health);
    renderSeen(card);
  }

  function render(hosts) {
    if (!Array.isArray(hosts)) throw new Error("GET /api/v1/hosts: expected a JSON list");
    hosts = hosts.filter(function (h) { return h && typeof h.host === "string"; });
    hosts.sort(function (a, b) { return a.host < b.host ? -1 : a.host > b.host ? 1 : 0; });
    var seen = new Set();
    hosts.forEach(function (h, i) {
      seen.add(h.host);
      var card = cards.get(h.host);
      if (!card) {
        card = createCard(h.host);
        cards.set(h.host, card);
      }
      updateCard(card, h);
      // keep DOM order == sorted order, moving only what is out of place
      if (grid.children[i] !== card.root) grid.insertBefore(card.root, grid.children[i] || null);
    });
    cards.forEach(function (card, name) {
      if (!seen.has(name)) {
        card.root.remove();
        cards.delete(name);
      }
    });
    renderDrift(hosts);
    empty.hidden = hosts.length !== 0;
    grid.hidden = hosts.length === 0;
    var down = hosts.filter(function (h) { return h.up !== true; }).length;
    F.setText("hosts-count", (hosts.length === 1 ? F.t("{n} host", { n: 1 }) : F.t("{n} hosts", { n: hosts.length }))
      + (down ? F.t(", {n} down", { n: down }) : ""));
    F.setText("hosts-updated", F.t("· updated {time}", { time: F.fmtDateTime(Date.now() / 1000) }));
    grid.setAttribute("aria-busy", "false");
    if (live) live.sendSubscribe(false);
  }

  var DRIFT_NAMES = { agent_version: F.t("agent version"), config_hash: F.t("config") };

  function renderDrift(hosts) {
    var panel = document.getElementById("drift");
    var list = document.getElementById("drift-list");
    var drifting = hosts.filter(function (h) { return h.drift === true; });
    panel.hidden = drifting.length === 0;
    F.setText("drift-count", drifting.length ? "(" + drifting.length + ")" : "");
    list.textContent = "";
    drifting.forEach(function (h) {
      var item = F.el("li", "drift-item");
      var link = F.el("a", "drift-host", h.host);
      link.href = "/hosts/" + encodeURIComponent(h.host);
      item.appendChild(link);
      (h.drift_fields || []).forEach(function (field) {
        var value = field === "agent_version" ? h.agent_version : h.config_hash;
        var expected = (h.drift_baseline || {})[field];
        item.appendChild(F.el("span", "drift-field", (DRIFT_NAMES[field] || field) + " " + value +
          (expected ? F.t(" (group has {value})", { value: expected }) : "")));
      });
      list.appendChild(item);
    });
  }

  // Firing alerts (GET /prometheus/api/v1/alerts) listed on the card of the host their
  // `host` or `instance` label names.
  function renderAlerts(data) {
    var byHost = new Map();
    (data.alerts || []).forEach(function (a) {
      if (a.state !== "firing") return;
      var host = a.labels.host || a.labels.instance;
      if (!byHost.has(host)) byHost.set(host, []);
      byHost.get(host).push(a.labels.alertname);
    });
    cards.forEach(function (card, name) {
      var names = (byHost.get(name) || []).sort();
      F.setText(card.refs.alerts, names.length ? F.t("Firing: ") + names.join(", ") : "");
      card.refs.alerts.hidden = names.length === 0;
      card.root.classList.toggle("has-alerts", names.length > 0);
    });
  }

  function refresh() {
    if (inFlight) {
      pending = true;
      return;
    }
    var wait = lastFetch + MIN_GAP_MS - Date.now();
    if (wait > 0) {
      pending = true;
      window.setTimeout(drain, wait);
      return;
    }
    inFlight = true;
    lastFetch = Date.now();
    F.fetchJSON("/api/v1/hosts")
      .then(function (hosts) {
        render(hosts);
        F.clearError("hosts");
        return F.fetchJSON("/prometheus/api/v1/alerts").then(function (doc) {
          renderAlerts(doc.data);
          F.clearError("alerts");
        }, function (err) { F.showError("alerts", F.t("Could not load alerts — ") + err.message); });
      })
      .catch(function (err) {
        F.showError("hosts", F.t("Could not load hosts — ") + err.message);
      })
      .then(function () {
        inFlight = false;
        drain();
      });
  }

  function drain() {
    if (pending && !inFlight) {
      pending = false;
      refresh();
    }
  }

  function schedulePoll() {
    if (pollTimer) window.clearInterval(pollTimer);
    pollTimer = window.setInterval(refresh, REFRESH_MS);
  }

  // "last seen N s ago" ticks every second without refetching
  window.setInterval(function () {
    cards.forEach(renderSeen);
  }, 1000);

  live = new F.LiveSocket({
    topics: function () {
      return Array.from(cards.keys()).map(function (h) { return "host:" + h; });
    },
    onFrame: function (frame) {
      if (frame.topic.indexOf("host:") === 0) refresh();
    },
  });

  document.addEventListener("visibilitychange", function () {
    if (!document.hidden) refresh();
  });

  refresh();
  schedulePoll();
})();
