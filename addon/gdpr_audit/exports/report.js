// Filters and charts of the self-contained report. Data comes from the JSON block and
// reaches the page only as text nodes (textContent), never as markup.
"use strict";
(function () {
  const SVG = "http://www.w3.org/2000/svg";
  const violations = JSON.parse(document.getElementById("violations-data").textContent);
  const rows = Array.from(document.querySelectorAll("#violations tbody tr[data-index]"));
  const controls = {
    rule: document.getElementById("filter-rule"),
    recipient: document.getElementById("filter-recipient"),
    severity: document.getElementById("filter-severity"),
    text: document.getElementById("filter-text"),
  };

  function matches(v) {
    const text = controls.text.value.trim().toLowerCase();
    return (!controls.rule.value || v.rule === controls.rule.value) &&
      (!controls.recipient.value || v.recipient === controls.recipient.value) &&
      (!controls.severity.value || v.severity === controls.severity.value) &&
      (!text || v.search.includes(text));
  }

  function el(name, attributes, text) {
    const node = document.createElementNS(SVG, name);
    for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, value);
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function count(items, key) {
    const counts = new Map();
    for (const item of items) counts.set(key(item), (counts.get(key(item)) || 0) + 1);
    return counts;
  }

  function horizontalBars(svg, counts) {
    const entries = Array.from(counts).sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1)).slice(0, 15);
    const max = Math.max(1, ...entries.map((e) => e[1]));
    svg.replaceChildren();
    svg.setAttribute("viewBox", `0 0 400 ${Math.max(1, entries.length) * 22}`);
    entries.forEach(([label, n], i) => {
      const y = i * 22;
      svg.append(el("text", { x: 0, y: y + 15 }, label.length > 28 ? label.slice(0, 27) + "…" : label));
      const bar = el("rect", { class: "bar", x: 170, y: y + 4, height: 14, width: Math.max(2, (n / max) * 190) });
      bar.append(el("title", {}, `${label}: ${n}`));
      svg.append(bar, el("text", { x: 174 + (n / max) * 190, y: y + 15 }, String(n)));
    });
  }

  function timeBars(svg, items) {
    const times = items.map((v) => Date.parse(v.timestamp)).filter((t) => !Number.isNaN(t));
    const span = times.length ? Math.max(...times) - Math.min(...times) : 0;
    // Bucket by day, hour or minute so that the chart has a readable number of bars.
    const width = span > 2 * 86400e3 ? 10 : span > 2 * 3600e3 ? 13 : 16;
    const counts = count(items.filter((v) => v.timestamp), (v) => v.timestamp.slice(0, width));
    const entries = Array.from(counts).sort((a, b) => (a[0] < b[0] ? -1 : 1));
    const max = Math.max(1, ...entries.map((e) => e[1]));
    const step = 380 / Math.max(1, entries.length);
    svg.replaceChildren();
    svg.setAttribute("viewBox", "0 0 400 150");
    entries.forEach(([bucket, n], i) => {
      const height = (n / max) * 110;
      const bar = el("rect", { class: "bar time", x: 10 + i * step, y: 120 - height, width: Math.max(1, step - 2), height });
      bar.append(el("title", {}, `${bucket.replace("T", " ")}: ${n}`));
      svg.append(bar);
    });
    if (entries.length) {
      svg.append(el("text", { x: 10, y: 140 }, entries[0][0].replace("T", " ")));
      svg.append(el("text", { x: 390, y: 140, "text-anchor": "end" }, entries[entries.length - 1][0].replace("T", " ")));
    }
  }

  function update() {
    const shown = [];
    rows.forEach((row) => {
      const v = violations[Number(row.dataset.index)];
      row.hidden = !matches(v);
      if (!row.hidden) shown.push(v);
    });
    document.getElementById("shown-count").textContent = String(shown.length);
    document.getElementById("total-count").textContent = String(violations.length);
    horizontalBars(document.getElementById("chart-recipient"), count(shown, (v) => v.recipient));
    horizontalBars(document.getElementById("chart-rule"), count(shown, (v) => v.rule));
    timeBars(document.getElementById("chart-time"), shown);
  }

  for (const v of violations) {
    v.search = [v.rule, v.severity, v.recipient, v.request, v.categories, v.subjects, v.where,
      v.message, v.capture].join(" ").toLowerCase();
  }
  for (const control of Object.values(controls)) control.addEventListener("input", update);
  update();
})();
