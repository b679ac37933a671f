// jacspec explorer: pick an init recipe, POST it to /v1/analyses, draw the answer. No dependencies, no build step.
// Every URL is relative to the page, so the explorer also works behind a path prefix.

const API = { activations: "v1/activations", schemes: "v1/init-schemes", analyses: "v1/analyses", runs: "v1/runs" };
const SVG_NS = "http://www.w3.org/2000/svg";
const MINUS = "\u2212";
/** The form fields kept in the address bar, so an analysis can be shared as a link. */
const URL_FIELDS = ["activation", "scheme", "gain", "width", "depth", "count", "seed"];
/** Where a JSON pointer of a problem+json error points to in the form (the longest prefix wins). */
const POINTER_FIELDS = [
  ["/network/activation/", null], // an activation parameter: resolved to its own input below
  ["/network/activation", "activation"],
  ["/network/init/scheme", "scheme"],
  ["/network/init/gain", "gain"],
  ["/network/init/widths/", "width"],
  ["/network/init/widths", "depth"],
  ["/network/init/seed", "seed"],
  ["/inputs/count", "count"],
  ["/inputs/seed", "seed"],
];
/** The per-layer columns of the table after j: the report's field, and how to print it. */
const COLUMNS = [
  ["shape", "shape"],
  ["weight_norm", "number"],
  ["derivative_bound", "number"],
  ["derivative_max", "number"],
  ["jacobian_norm_bound", "number"],
  ["jacobian_norm", "number"],
  ["backward_bound_log10", "number"],
  ["backward_norm_log10", "number"],
  ["gradient_norm", "number"],
  ["flags", "flags"],
];
const SHOWN_ERRORS = 6;

const $ = (id) => document.getElementById(id);
const form = $("form");
const catalog = { activations: new Map(), schemes: new Map(), loaded: false };
let lastReport = null;
let inflight = null;
let rendered = 0;

// ---------------------------------------------------------------- numbers

/** A number to 6 significant figures (what the table and the summary print); null as a dash. */
function fmt(value) {
  if (value === null || value === undefined) return "—";
  return value.toPrecision(6).replaceAll("-", MINUS);
}

/** The exact value, as JSON would print it: what data-value holds for anyone who needs every digit. */
function exact(value) {
  return value === null || value === undefined ? "null" : String(value);
}

/** A field's number as typed: NaN (sent as null, so that the API names the field) when it is not one. */
function typed(id) {
  const text = $(id).value.trim();
  return text === "" ? Number.NaN : Number(text);
}

function jsonNumber(value) {
  return Number.isFinite(value) ? value : null;
}

// ---------------------------------------------------------------- the request

/** The activation as the API takes it: its name, or an object when a parameter differs from its default. */
function activationValue() {
  const name = $("activation").value;
  const info = catalog.activations.get(name);
  const params = {};
  let changed = false;
  for (const p of info ? info.parameters : []) {
    const value = typed(`param-${p.name}`);
    params[p.name] = jsonNumber(value);
    changed ||= value !== p.default;
  }
  return changed ? { name, ...params } : name;
}

/** The body of POST /v1/analyses for the form, or a message naming the field that cannot make one. */
function requestBody() {
  const depth = typed("depth");
  if (!Number.isInteger(depth) || depth < 1 || depth > 100000) {
    return { error: { field: "depth", detail: "the depth must be a whole number of layers from 1 to 100000" } };
  }
  const width = jsonNumber(typed("width"));
  const seed = jsonNumber(typed("seed"));
  return {
    body: {
      network: {
        activation: activationValue(),
        init: {
          widths: Array.from({ length: depth + 1 }, () => width),
          scheme: $("scheme").value,
          gain: jsonNumber(typed("gain")),
          seed,
        },
      },
      inputs: { count: jsonNumber(typed("count")), seed },
    },
  };
}

/** JSON with two-space indents, but a list of numbers on one line. */
function pretty(body) {
  return JSON.stringify(body, null, 2).replace(/\[\s+([-\d.eE+,\s]+?)\s+\]/g, (_, inner) => {
    return `[${inner.split(/,\s*/).join(", ")}]`;
  });
}

function shellQuote(text) {
  return `'${text.replaceAll("'", "'\\''")}'`;
}

function headers() {
  const key = $("api-key").value;
  return key ? { "X-API-Key": key } : {};
}

/** Show the body and the equivalent curl command under "Request". */
function showRequest() {
  const made = requestBody();
  if (made.error) {
    $("request-json").textContent = `(no request: ${made.error.detail})`;
    $("request-curl").textContent = "";
    return;
  }
  const url = new URL(API.analyses, document.baseURI).href;
  const key = $("api-key").value ? ` -H "X-API-Key: $JACSPEC_API_KEY"` : "";
  $("request-json").textContent = pretty(made.body);
  const data = shellQuote(JSON.stringify(made.body));
  $("request-curl").textContent =
    `curl -s -X POST ${shellQuote(url)} -H 'Content-Type: application/json'${key} -d ${data}`;
}

// ---------------------------------------------------------------- talking to the API

class ApiError extends Error {
  constructor(status, problem) {
    super(problem.detail || problem.title || `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
  }
}

/** fetch, and the parsed JSON body; any answer but 2xx becomes an ApiError carrying its problem details. */
async function api(path, init = {}) {
  let response;
  try {
    response = await fetch(path, { ...init, headers: { Accept: "application/json", ...headers(), ...init.headers } });
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw new ApiError(0, { title: "The server could not be reached", detail: String(err.message || err) });
  }
  const type = response.headers.get("Content-Type") || "";
  if (response.ok) return response.json();
  let problem = { title: response.statusText || "Error", status: response.status };
  if (type.includes("json")) {
    try {
      problem = await response.json();
    } catch {
      // keep the status line
    }
  }
  const retry = response.headers.get("Retry-After");
  if (retry) problem = { ...problem, retry_after: retry };
  throw new ApiError(response.status, problem);
}

async function loadCatalog() {
  const [activations, schemes] = await Promise.all([api(API.activations), api(API.schemes)]);
  catalog.activations = new Map(activations.map((a) => [a.name, a]));
  catalog.schemes = new Map(schemes.map((s) => [s.name, s]));
  fillSelect($("activation"), activations.map((a) => a.name));
  fillSelect($("scheme"), schemes.map((s) => s.name));
  catalog.loaded = true;
  describeActivation();
  describeScheme();
}

function fillSelect(select, names) {
  const keep = select.value;
  select.replaceChildren(
    ...names.map((name) => {
      const option = document.createElement("option");
      option.value = name;
      option.textContent = name;
      return option;
    }),
  );
  if (names.includes(keep)) select.value = keep;
}

function describeActivation() {
  const info = catalog.activations.get($("activation").value);
  $("activation-hint").textContent = info ? `${info.formula}; sup|h′| = ${info.bound_formula}` : "";
  const box = $("activation-params");
  box.replaceChildren(
    ...(info ? info.parameters : []).map((p) => {
      const field = document.createElement("div");
      field.className = "field";
      const label = document.createElement("label");
      label.htmlFor = `param-${p.name}`;
      label.textContent = p.name;
      const input = document.createElement("input");
      Object.assign(input, { id: `param-${p.name}`, name: p.name, type: "number", step: "any", autocomplete: "off" });
      input.inputMode = "decimal";
      input.value = String(p.default);
      const hint = document.createElement("p");
      hint.className = "hint";
      hint.id = `param-${p.name}-hint`;
      hint.textContent = `${p.description} (default ${p.default})`;
      input.setAttribute("aria-describedby", hint.id);
      field.append(label, input, hint);
      return field;
    }),
  );
}

function describeScheme() {
  const info = catalog.schemes.get($("scheme").value);
  $("scheme-hint").textContent = info ? `std = ${info.std_formula} (${info.distribution})` : "";
}

// ---------------------------------------------------------------- errors and status

function setStatus(text) {
  $("status").textContent = text;
}

function clearProblem() {
  $("problem").replaceChildren();
  for (const input of form.querySelectorAll("[aria-invalid]")) input.removeAttribute("aria-invalid");
}

/** The form control a JSON pointer names, if any. */
function fieldFor(pointer) {
  for (const [prefix, id] of POINTER_FIELDS) {
    if (pointer === prefix || (prefix.endsWith("/") && pointer.startsWith(prefix))) {
      return id ? $(id) : ($(`param-${pointer.slice(prefix.length).split("/")[0]}`) ?? $("activation"));
    }
    if (pointer.startsWith(`${prefix}/`)) return $(id);
  }
  return null;
}

/** Render a problem+json body (or a client-side error) in the page: title, detail, each pointer and its detail. */
function showProblem(status, problem) {
  clearProblem();
  const box = $("problem");
  const heading = document.createElement("h2");
  heading.textContent = status ? `${problem.title || "Error"} (HTTP ${status})` : problem.title || "Error";
  box.append(heading);
  if (problem.detail) {
    const detail = document.createElement("p");
    detail.className = "detail";
    detail.textContent = problem.detail;
    box.append(detail);
  }
  const errors = problem.errors || [];
  if (errors.length) {
    const list = document.createElement("ul");
    for (const error of errors.slice(0, SHOWN_ERRORS)) {
      const item = document.createElement("li");
      const pointer = document.createElement("code");
      pointer.className = "pointer";
      pointer.textContent = error.pointer || "/";
      const field = fieldFor(error.pointer || "");
      if (field) {
        field.setAttribute("aria-invalid", "true");
        field.closest("details")?.setAttribute("open", ""); // a field at fault is never folded away
        const link = document.createElement("a");
        link.href = `#${field.id}`;
        link.append(pointer);
        link.addEventListener("click", (event) => {
          event.preventDefault();
          field.focus();
        });
        item.append(link);
      } else {
        item.append(pointer);
      }
      const text = document.createElement("span");
      text.className = "error-detail";
      text.textContent = `: ${error.detail}`;
      item.append(text);
      list.append(item);
    }
    if (errors.length > SHOWN_ERRORS) {
      const more = document.createElement("li");
      more.textContent = `and ${errors.length - SHOWN_ERRORS} more of the ${errors.length} the server listed`;
      list.append(more);
    }
    box.append(list);
  }
  const notes = [];
  if (problem.retry_after) notes.push(`retry after ${problem.retry_after} s`);
  if (problem.request_id) notes.push(`request id ${problem.request_id}`);
  if (notes.length) {
    const note = document.createElement("p");
    note.className = "hint";
    note.textContent = notes.join("; ");
    box.append(note);
  }
}

// ---------------------------------------------------------------- analysing

async function analyse() {
  clearProblem();
  showRequest();
  const made = requestBody();
  if (made.error) {
    $("results").hidden = true;
    showProblem(0, {
      title: "Cannot make a request",
      detail: made.error.detail,
      errors: [{ pointer: "/network/init/widths", detail: made.error.detail }],
    });
    setStatus("");
    return;
  }
  inflight?.abort();
  const controller = new AbortController();
  inflight = controller;
  const depth = made.body.network.init.widths.length - 1;
  setStatus(`Analysing ${depth} layers…`);
  $("results").setAttribute("aria-busy", "true");
  try {
    const report = await api(API.analyses, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(made.body),
      signal: controller.signal,
    });
    lastReport = report;
    render(report);
    remember();
    const ms = report.meta?.timings_ms?.total;
    const took = ms === undefined ? "" : ` in ${Math.round(ms)} ms`;
    setStatus(`Analysed ${report.summary.depth} layers${took}: ${report.summary.verdict}.`);
  } catch (err) {
    if (err.name === "AbortError") return;
    lastReport = null;
    $("results").hidden = true;
    setStatus("");
    if (err instanceof ApiError) showProblem(err.status, err.problem);
    else showProblem(0, { title: "The page failed", detail: String(err) });
  } finally {
    if (inflight === controller) {
      inflight = null;
      $("results").removeAttribute("aria-busy");
    }
  }
}

/** Keep the form in the address bar, so that the analysis can be shared (and is re-run when the link is opened). */
function remember() {
  const params = new URLSearchParams();
  for (const id of URL_FIELDS) params.set(id, $(id).value);
  history.replaceState(null, "", `?${params}`);
}

function restore() {
  const params = new URLSearchParams(location.search);
  let any = false;
  for (const id of URL_FIELDS) {
    const value = params.get(id);
    if (value === null) continue;
    any = true;
    const element = $(id);
    if (element.tagName === "SELECT" && ![...element.options].some((o) => o.value === value)) {
      element.append(new Option(value, value));
    }
    element.value = value;
  }
  return any;
}

// ---------------------------------------------------------------- the result

function render(report) {
  renderSummary(report);
  $("results").hidden = false;
  renderPlot(report);
  renderTable(report);
  rendered += 1;
  document.documentElement.dataset.analyses = String(rendered); // how many reports were drawn (for tests)
}

function element(tag, attrs = {}, text = null) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) el.setAttribute(key, value);
  if (text !== null) el.textContent = text;
  return el;
}

function power(value) {
  const span = element("span", { class: "power" });
  if (value === null || value === undefined) {
    span.textContent = "—";
    return span;
  }
  span.append("10", element("sup", {}, fmt(value)));
  return span;
}

function renderSummary(report) {
  const s = report.summary;
  const box = $("summary");
  const verdict = element("p", { class: "verdict", "data-verdict": s.verdict });
  verdict.append(
    "Verdict: ",
    element("strong", { id: "verdict-value", class: `badge ${s.verdict}` }, s.verdict),
    " from the true norms; the bound says ",
    element("strong", { id: "bound-verdict-value", class: `badge ${s.bound_verdict}` }, s.bound_verdict),
    ".",
  );
  const advice = element("p", { id: "advice", class: "advice" }, s.advice);
  const figures = element("dl", { class: "figures" });
  const rows = [
    ["input_bound_log10", "bound on ‖∂a_L/∂a_0‖", true],
    ["input_norm_log10", "true ‖∂a_L/∂a_0‖", true],
    ["rate_log10", "bound's growth per layer", true],
    ["observed_rate_log10", "true growth per layer", true],
    ["suggested_gain", "suggested gain", false],
    ["bound_gain", "gain for the bound (worst case)", false],
  ];
  for (const [field, label, isLog] of rows) {
    const value = s[field];
    const dd = element("dd", { "data-field": field, "data-value": exact(value) });
    dd.append(isLog ? power(value) : fmt(value));
    const pair = element("div");
    pair.append(element("dt", {}, label), dd);
    figures.append(pair);
  }
  box.replaceChildren(verdict, advice, figures);
  if (Number.isFinite(s.suggested_gain) && s.gain !== null && s.suggestion !== "unchanged") {
    const gain = Number(s.suggested_gain.toPrecision(6));
    const button = element("button", { type: "button", id: "use-suggested" }, `Analyse with gain ${gain}`);
    button.addEventListener("click", () => {
      $("gain").value = String(gain);
      analyse();
    });
    const actions = element("p", { class: "actions" });
    actions.append(button);
    box.append(actions);
  }
}

function renderTable(report) {
  const s = report.summary;
  const first = report.layers.length ? report.layers[0] : null;
  const caption = $("layers-caption");
  const text =
    `Per-layer figures for ${s.depth} layers` +
    (first ? ` (${first.activation})` : "") +
    ", to 6 significant figures";
  caption.replaceChildren(element("span", {}, text));
  const body = $("layers").tBodies[0];
  body.replaceChildren(
    ...report.layers.map((layer) => {
      const row = element("tr");
      const j = String(layer.index);
      row.append(element("th", { scope: "row", "data-field": "index", "data-value": j }, j));
      for (const [field, kind] of COLUMNS) {
        const value = layer[field];
        if (kind === "number") {
          row.append(element("td", { "data-field": field, "data-value": exact(value), class: "num" }, fmt(value)));
        } else {
          const text = value.join(kind === "shape" ? " × " : ", ");
          row.append(element("td", { "data-field": field, "data-value": JSON.stringify(value) }, text));
        }
      }
      return row;
    }),
  );
}

// ---------------------------------------------------------------- the plot: inline SVG, log10 on the y-axis

function svg(tag, attrs = {}, text = null) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [key, value] of Object.entries(attrs)) el.setAttribute(key, String(value));
  if (text !== null) el.textContent = text;
  return el;
}

/** The smallest of 1, 2, 5, 10, 20, 50, … that splits `span` into at most `count` steps. */
function niceStep(span, count) {
  const raw = Math.max(span / Math.max(count, 1), 1);
  const magnitude = 10 ** Math.floor(Math.log10(raw));
  for (const m of [1, 2, 5, 10]) if (m * magnitude >= raw) return m * magnitude;
  return 10 * magnitude;
}

/** The exponent of a power of ten as an SVG text: "10" with a raised exponent. */
function powerLabel(k, attrs) {
  const text = svg("text", attrs);
  text.append("10");
  text.append(svg("tspan", { dy: "-0.6em", "font-size": "0.75em" }, String(k).replace("-", MINUS)));
  return text;
}

function describe(report, bound, norm) {
  const L = report.summary.depth;
  const at = (values, j) => (values[j] === null ? "unknown" : `10^${values[j].toPrecision(3)}`);
  return (
    `Log-scale plot against layer j from 0 (the input) to ${L}. ` +
    `The bound on ‖∂a_L/∂a_j‖ is ${at(bound, 0)} at j = 0 and ${at(bound, L)} at j = ${L}; ` +
    `the true norm is ${at(norm, 0)} at j = 0 and ${at(norm, L)} at j = ${L}. ` +
    `Verdict: ${report.summary.verdict}.`
  );
}

function renderPlot(report) {
  const box = $("plot");
  const s = report.summary;
  const L = s.depth;
  const bound = [s.input_bound_log10, ...report.layers.map((l) => l.backward_bound_log10)];
  const norm = [s.input_norm_log10, ...report.layers.map((l) => l.backward_norm_log10)];
  const known = [...bound, ...norm, 0].filter((v) => v !== null && Number.isFinite(v));

  const width = Math.max(box.clientWidth, 260);
  const height = Math.round(Math.min(Math.max(width * 0.55, 240), 440));
  const m = { left: 58, right: 14, top: 14, bottom: 46 };
  const plotW = width - m.left - m.right;
  const plotH = height - m.top - m.bottom;

  const yStep = niceStep(Math.max(...known) - Math.min(...known), Math.max(Math.floor(plotH / 36), 2));
  let lo = Math.floor(Math.min(...known) / yStep) * yStep;
  let hi = Math.ceil(Math.max(...known) / yStep) * yStep;
  if (hi - lo < yStep) hi = lo + yStep;
  const xStep = niceStep(L, Math.max(Math.floor(plotW / 48), 2));
  const x = (j) => m.left + (L === 0 ? 0 : (j / L) * plotW);
  const y = (v) => m.top + ((hi - v) / (hi - lo)) * plotH;

  const title = `${s.verdict}: ‖∂a_L/∂a_j‖ against layer j, log scale`;
  const root = svg("svg", {
    width,
    height,
    viewBox: `0 0 ${width} ${height}`,
    role: "img",
    "aria-labelledby": "plot-title plot-desc",
    class: "chart",
  });
  root.append(
    svg("title", { id: "plot-title" }, title),
    svg("desc", { id: "plot-desc" }, describe(report, bound, norm)),
  );

  const grid = svg("g", { class: "grid" });
  const axes = svg("g", { class: "axes" });
  for (let k = lo; k <= hi + 1e-9; k += yStep) {
    grid.append(svg("line", { x1: m.left, x2: m.left + plotW, y1: y(k), y2: y(k), class: k === 0 ? "zero" : "" }));
    axes.append(powerLabel(Math.round(k), { x: m.left - 8, y: y(k) + 4, "text-anchor": "end" }));
  }
  for (let j = 0; j <= L; j += xStep) {
    grid.append(svg("line", { x1: x(j), x2: x(j), y1: m.top, y2: m.top + plotH }));
    axes.append(svg("text", { x: x(j), y: m.top + plotH + 16, "text-anchor": "middle" }, String(j)));
  }
  axes.append(
    svg("line", { x1: m.left, x2: m.left, y1: m.top, y2: m.top + plotH, class: "axis" }),
    svg("line", { x1: m.left, x2: m.left + plotW, y1: m.top + plotH, y2: m.top + plotH, class: "axis" }),
    svg(
      "text",
      { x: m.left + plotW / 2, y: height - 6, "text-anchor": "middle", class: "axis-title" },
      "layer j (0 is the input)",
    ),
    svg(
      "text",
      { transform: `translate(14 ${m.top + plotH / 2}) rotate(-90)`, "text-anchor": "middle", class: "axis-title" },
      "‖∂a_L/∂a_j‖ (log scale)",
    ),
  );
  root.append(grid, axes);

  const thresholds = svg("g", { class: "thresholds" });
  for (const t of [s.thresholds.vanishing_log10, s.thresholds.exploding_log10]) {
    if (t > lo && t < hi) {
      thresholds.append(svg("line", { x1: m.left, x2: m.left + plotW, y1: y(t), y2: y(t), class: "threshold" }));
    }
  }
  root.append(thresholds);

  const markers = L <= 80;
  for (const [name, values, label] of [
    ["bound", bound, "bound"],
    ["norm", norm, "true norm"],
  ]) {
    let d = "";
    let pen = false;
    values.forEach((v, j) => {
      if (v === null) {
        pen = false;
        return;
      }
      d += `${pen ? "L" : "M"}${x(j).toFixed(2)} ${y(v).toFixed(2)}`;
      pen = true;
    });
    const series = svg("g", { class: `series ${name}`, "data-series": name });
    series.append(svg("path", { d, class: name, "data-points": values.filter((v) => v !== null).length }));
    if (markers) {
      values.forEach((v, j) => {
        if (v === null) return;
        const tip = svg("title", {}, `j = ${j}: ${label} 10^${fmt(v)}`);
        const mark =
          name === "bound"
            ? svg("circle", { cx: x(j), cy: y(v), r: 3, class: name })
            : svg("rect", { x: x(j) - 3, y: y(v) - 3, width: 6, height: 6, class: name });
        mark.append(tip);
        series.append(mark);
      });
    }
    root.append(series);
  }
  box.replaceChildren(root);
}

// ---------------------------------------------------------------- wiring

async function copyCurl() {
  const text = $("request-curl").textContent;
  try {
    await navigator.clipboard.writeText(text);
    $("copy-status").textContent = "Copied.";
  } catch {
    const range = document.createRange();
    range.selectNodeContents($("request-curl"));
    const selection = getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
    $("copy-status").textContent = "Selected: press Ctrl+C to copy.";
  }
}

async function start() {
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    analyse();
  });
  form.addEventListener("input", showRequest);
  form.addEventListener("change", showRequest);
  $("activation").addEventListener("change", () => {
    describeActivation();
    showRequest();
  });
  $("scheme").addEventListener("change", describeScheme);
  $("api-key").addEventListener("change", async () => {
    if (catalog.loaded) return;
    await startCatalog();
    if (catalog.loaded) loadRuns();
  });
  $("copy-curl").addEventListener("click", copyCurl);
  let pending = false;
  new ResizeObserver(() => {
    if (pending || !lastReport) return;
    pending = true;
    requestAnimationFrame(() => {
      pending = false;
      if (lastReport) renderPlot(lastReport);
    });
  }).observe($("plot"));

  $("runs-refresh").addEventListener("click", loadRuns);
  const shared = restore();
  showRequest();
  await startCatalog();
  if (catalog.loaded) await loadRuns(); // not before a key the server wants is entered
  const run = new URLSearchParams(location.search).get("run");
  if (run) await openRun(run);
  else if (shared) analyse();
  document.documentElement.dataset.ready = "true";
}

// ---------------------------------------------------------------- runs

async function loadRuns() {
  const list = $("run-list");
  try {
    const page = await api(`${API.runs}?limit=100`);
    list.replaceChildren(
      ...page.runs.map((run) => {
        const item = element("li", { "data-run": run.run });
        const button = element("button", { type: "button" }, run.run);
        button.addEventListener("click", () => openRun(run.run));
        item.append(button, ` ${run.points} steps, ${run.first_step}–${run.last_step}, last ${run.last_verdict}`);
        return item;
      }),
    );
    if (!page.runs.length) list.replaceChildren(element("li", {}, "No runs yet."));
  } catch (err) {
    list.replaceChildren(element("li", {}, `Could not list the runs: ${err.message}`));
  }
}

/** A colour for log10 ‖∂a_L/∂a_j‖: white at 0, blue below, red above, saturated at ±limit; grey when absent. */
function heat(value, limit) {
  if (value === null) return "#bbbbbb";
  const t = Math.max(-1, Math.min(1, value / limit));
  const fade = Math.round(255 * (1 - Math.abs(t)));
  return t < 0 ? `rgb(${fade},${fade},255)` : `rgb(255,${fade},${fade})`;
}

async function openRun(name) {
  clearProblem();
  let run;
  try {
    run = await api(`${API.runs}/${encodeURIComponent(name)}`);
  } catch (err) {
    if (err instanceof ApiError) showProblem(err.status, err.problem);
    return;
  }
  $("run-view").hidden = false;
  $("run-title").textContent = `Run ${run.run}: ${run.steps.length} steps`;
  renderHeatmap(run);
  renderVerdicts(run);
  $("run-events").replaceChildren(
    ...run.events.map((e) =>
      element("li", { "data-step": String(e.step), "data-kind": e.kind },
        `step ${e.step}: ${e.kind}${e.parameter ? ` (${e.parameter})` : ""}: ${e.message}`),
    ),
  );
  const params = new URLSearchParams(location.search);
  params.set("run", run.run);
  history.replaceState(null, "", `?${params}`);
  document.documentElement.dataset.runView = run.run; // the run drawn (for tests)
}

function renderHeatmap(run) {
  const cell = 18;
  const left = 44;
  const top = 8;
  const bottom = 28;
  const layers = run.layers;
  const width = left + cell * run.steps.length + 8;
  const height = top + cell * layers.length + bottom;
  const values = layers.flatMap((l) => l.metrics.backward_norm_log10).filter((v) => v !== null);
  const limit = Math.max(1, ...values.map(Math.abs));
  const root = svg("svg", {
    viewBox: `0 0 ${width} ${height}`, width: String(width), height: String(height), role: "img",
    "aria-labelledby": "run-title run-heatmap-caption",
  });
  layers.forEach((layer, row) => {
    root.append(svg("text", { x: String(left - 4), y: String(top + row * cell + cell * 0.7), "text-anchor": "end",
      class: "axis-label" }, `j=${layer.index}`));
    layer.metrics.backward_norm_log10.forEach((value, column) => {
      const step = run.steps[column];
      const rect = svg("rect", {
        x: String(left + column * cell), y: String(top + row * cell), width: String(cell - 1), height: String(cell - 1),
        fill: heat(value, limit), class: "heat-cell", "data-layer": String(layer.index), "data-step": String(step),
        "data-value": value === null ? "null" : String(value),
      });
      rect.append(svg("title", {}, `layer ${layer.index}, step ${step}: ${value === null ? "—" : fmt(value)}`));
      rect.addEventListener("click", () => openStep(run.run, step));
      root.append(rect);
    });
  });
  run.steps.forEach((step, column) => {
    root.append(svg("text", { x: String(left + column * cell + cell / 2), y: String(height - 10),
      "text-anchor": "middle", class: "axis-label" }, String(step)));
  });
  $("run-heatmap").replaceChildren(root);
}

function renderVerdicts(run) {
  $("run-verdicts").replaceChildren(
    ...run.steps.map((step, i) => {
      const item = element("li", { "data-step": String(step), "data-verdict": run.verdicts[i] });
      const button = element("button", { type: "button", class: `verdict ${run.verdicts[i]}` },
        `${step}: ${run.verdicts[i]}`);
      button.addEventListener("click", () => openStep(run.run, step));
      item.append(button);
      return item;
    }),
  );
}

async function openStep(name, step) {
  clearProblem();
  try {
    const report = await api(`${API.runs}/${encodeURIComponent(name)}/steps/${step}`);
    if (report.kind === "survey") {
      setStatus(`Step ${step} of ${name} is a weight survey (${report.summary.matrices} matrices).`);
      return;
    }
    lastReport = report;
    render(report);
    setStatus(`Step ${step} of ${name}: ${report.summary.verdict}.`);
    document.documentElement.dataset.runStep = String(step); // the step shown (for tests)
  } catch (err) {
    if (err instanceof ApiError) showProblem(err.status, err.problem);
  }
}

async function startCatalog() {
  try {
    await loadCatalog();
    clearProblem();
    showRequest();
  } catch (err) {
    const problem = err.problem || { detail: String(err) };
    const title = `Could not load the lists of activations and schemes: ${problem.title || "error"}`;
    showProblem(err.status, { ...problem, title });
    if (err.status === 401) {
      // The server wants a key: show where it goes; the lists load once it is entered.
      document.querySelector("details.more").open = true;
      const note = element("p", {}, "Enter the key in the API key field below.");
      $("problem").append(note);
    }
  }
}

start();
