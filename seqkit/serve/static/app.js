// seqkit's page: the prediction tree of what the model expects next, redrawn as you type;
// sampling streamed as it is made; beam search; each character shaded by its surprisal.
"use strict";

const $ = (id) => document.getElementById(id);
const SVG = "http://www.w3.org/2000/svg";
const VISIBLE = { " ": "\u2423", "\n": "\u21b5", "\t": "\u21e5", "\r": "\u240d" };
const visible = (ch) => VISIBLE[ch] || ch;
let treeRequest = null;
let typingTimer = null;

async function post(path, body, signal) {
  const response = await fetch(path, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
    signal,
  });
  if (!response.ok) {
    let message = `${response.status}`;
    try { message = (await response.json()).error || message; } catch (_) { /* not JSON */ }
    throw new Error(message);
  }
  return response;
}

function number(id, fallback) {
  const value = Number($(id).value);
  return Number.isFinite(value) ? value : fallback;
}

// -- the tree -------------------------------------------------------------------------------
// Each node: {char, prob, path_prob, children}; drawn left to right, a column per level,
// a box sized and coloured by probability, and labelled with both probabilities.
const COLUMN = 150, ROW = 26, BOX_W = 122, ROOT_W = 150;

function layout(nodes, depth, rows, path) {
  for (const node of nodes) {
    node.depth = depth;
    node.path = path + node.char;
    if (node.children && node.children.length) {
      layout(node.children, depth + 1, rows, node.path);
      node.y = (node.children[0].y + node.children[node.children.length - 1].y) / 2;
    } else {
      node.y = rows.count++ * ROW + ROW / 2 + 6;
    }
  }
}

function colour(prob) {
  const light = 92 - 52 * Math.sqrt(prob);
  return `hsl(214, 70%, ${light}%)`;
}

function drawTree(nodes, prime) {
  const svg = $("tree");
  svg.replaceChildren();
  const rows = { count: 0 };
  layout(nodes, 0, rows, "");
  let maxDepth = 0;
  const all = [];
  (function walk(list) { for (const n of list) { all.push(n); maxDepth = Math.max(maxDepth, n.depth); walk(n.children || []); } })(nodes);
  svg.setAttribute("width", 20 + ROOT_W + (maxDepth + 1) * COLUMN + 30);
  svg.setAttribute("height", Math.max(rows.count * ROW + 12, 60));
  const x = (n) => 20 + ROOT_W + n.depth * COLUMN;
  // The root: the end of the text, where every path starts.
  const rootY = nodes.length ? (nodes[0].y + nodes[nodes.length - 1].y) / 2 : 30;
  const tail = Array.from(prime || "").slice(-14).map(visible).join("");
  const root = document.createElementNS(SVG, "text");
  root.setAttribute("class", "root");
  root.setAttribute("x", 20 + ROOT_W - 12);
  root.setAttribute("y", rootY + 5);
  root.setAttribute("text-anchor", "end");
  root.textContent = (Array.from(prime || "").length > 14 ? "\u2026" : "") + tail;
  svg.appendChild(root);
  for (const n of nodes) {
    const edge = document.createElementNS(SVG, "path");
    edge.setAttribute("class", "edge");
    edge.setAttribute("d", `M${20 + ROOT_W - 6} ${rootY} C${x(n) - 20} ${rootY}, ${x(n) - 20} ${n.y}, ${x(n)} ${n.y}`);
    edge.setAttribute("stroke-width", 1 + 5 * n.prob);
    svg.appendChild(edge);
  }
  for (const n of all) {
    for (const c of n.children || []) {
      const edge = document.createElementNS(SVG, "path");
      edge.setAttribute("class", "edge");
      edge.setAttribute("d", `M${x(n) + BOX_W} ${n.y} C${x(n) + BOX_W + 14} ${n.y}, ${x(c) - 14} ${c.y}, ${x(c)} ${c.y}`);
      edge.setAttribute("stroke-width", 1 + 5 * c.prob);
      svg.appendChild(edge);
    }
  }
  for (const n of all) {
    const g = document.createElementNS(SVG, "g");
    g.setAttribute("class", "node");
    g.dataset.path = n.path;
    const height = 12 + 10 * Math.sqrt(n.path_prob);
    const rect = document.createElementNS(SVG, "rect");
    rect.setAttribute("x", x(n));
    rect.setAttribute("y", n.y - height / 2);
    rect.setAttribute("width", BOX_W);
    rect.setAttribute("height", height);
    rect.setAttribute("rx", 5);
    rect.setAttribute("fill", colour(n.prob));
    const ch = document.createElementNS(SVG, "text");
    ch.setAttribute("class", "char");
    ch.setAttribute("x", x(n) + 8);
    ch.setAttribute("y", n.y + 5);
    ch.textContent = visible(n.char);
    const probs = document.createElementNS(SVG, "text");
    probs.setAttribute("class", "probs");
    probs.setAttribute("x", x(n) + 26);
    probs.setAttribute("y", n.y + 4);
    probs.textContent = `${(100 * n.prob).toFixed(1)}% · ${(100 * n.path_prob).toFixed(2)}%`;
    const title = document.createElementNS(SVG, "title");
    title.textContent = `"${visible(n.path)}": ${(100 * n.prob).toFixed(2)}% after its parent, ${(100 * n.path_prob).toFixed(3)}% for the whole path`;
    g.append(rect, ch, probs, title);
    g.addEventListener("click", () => takePath(n.path));
    svg.appendChild(g);
    if (!n.children || !n.children.length) {
      const grow = document.createElementNS(SVG, "g");
      grow.setAttribute("class", "grow");
      grow.dataset.path = n.path;
      const circle = document.createElementNS(SVG, "circle");
      circle.setAttribute("cx", x(n) + BOX_W + 12);
      circle.setAttribute("cy", n.y);
      circle.setAttribute("r", 8);
      const plus = document.createElementNS(SVG, "text");
      plus.setAttribute("x", x(n) + BOX_W + 8);
      plus.setAttribute("y", n.y + 4);
      plus.textContent = "+";
      const tip = document.createElementNS(SVG, "title");
      tip.textContent = "one level deeper";
      grow.append(circle, plus, tip);
      grow.addEventListener("click", (event) => { event.stopPropagation(); growNode(n); });
      svg.appendChild(grow);
    }
  }
  svg.dataset.nodes = all.length;
}

let currentTree = [];

async function refreshTree() {
  if (treeRequest) treeRequest.abort();
  treeRequest = new AbortController();
  const prime = $("text").value;
  $("tree-status").textContent = "thinking\u2026";
  try {
    const response = await post("/v1/tree", { prime, width: number("width", 4), depth: number("depth", 3) }, treeRequest.signal);
    const body = await response.json();
    if (prime !== $("text").value) return; // typed on meanwhile
    currentTree = body.tree;
    drawTree(currentTree, prime);
    $("tree").dataset.prime = prime;
    $("tree-status").textContent = "";
  } catch (err) {
    if (err.name !== "AbortError") $("tree-status").textContent = err.message;
  }
}

async function growNode(node) {
  try {
    const prime = $("text").value + node.path;
    const response = await post("/v1/tree", { prime, width: number("width", 4), depth: 1 });
    const body = await response.json();
    node.children = body.tree.map((c) => ({ ...c, path_prob: c.prob * node.path_prob }));
    drawTree(currentTree, $("text").value);
  } catch (err) {
    $("tree-status").textContent = err.message;
  }
}

function takePath(path) {
  const text = $("text");
  text.value += path;
  text.focus();
  refreshTree();
}

// -- sampling, streamed ---------------------------------------------------------------------
async function sampleText() {
  const out = $("sample-output");
  const prime = $("text").value;
  out.replaceChildren();
  const head = document.createElement("span");
  head.className = "prime";
  head.textContent = prime;
  const body = document.createElement("span");
  body.id = "sample-text";
  out.append(head, body);
  $("sample-button").disabled = true;
  try {
    const response = await post("/v1/generate", {
      prime,
      length: number("length", 200),
      temperature: number("temperature", 0.8),
      top_k: number("top-k", 0),
      top_p: number("top-p", 1),
      seed: number("seed", 0),
      stream: true,
    });
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const event = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const kind = (event.match(/^event: (.*)$/m) || [null, "message"])[1];
        const data = JSON.parse((event.match(/^data: (.*)$/m) || [null, "{}"])[1]);
        if (kind === "message") body.textContent += data.text;
        if (kind === "error") throw new Error(data.error);
        if (kind === "done") out.dataset.done = "true";
      }
    }
  } catch (err) {
    body.textContent += ` [${err.message}]`;
  } finally {
    $("sample-button").disabled = false;
  }
}

async function beamSearch() {
  const list = $("beams");
  list.replaceChildren();
  try {
    const response = await post("/v1/generate", { prime: $("text").value, length: Math.min(number("length", 40), 60), beam: 5 });
    for (const beam of (await response.json()).beams) {
      const item = document.createElement("li");
      item.textContent = beam.text.replace(/\n/g, "\u21b5");
      const score = document.createElement("span");
      score.className = "score";
      score.textContent = `${beam.log_prob.toFixed(2)} nats, ${beam.log_prob_per_char.toFixed(3)}/char`;
      item.appendChild(score);
      list.appendChild(item);
    }
  } catch (err) {
    list.textContent = err.message;
  }
}

// -- scores -----------------------------------------------------------------------------------
async function scoreText() {
  const out = $("score-output");
  out.replaceChildren();
  $("score-summary").textContent = "";
  try {
    const text = $("text").value;
    const response = await post("/v1/score", { text });
    const result = await response.json();
    $("score-summary").textContent = `${result.characters_scored} characters, ${result.bits_per_char.toFixed(3)} bits/char, perplexity ${result.perplexity.toFixed(2)}`;
    const first = document.createElement("span");
    first.textContent = text[0];
    first.title = "the first character is not predicted";
    out.appendChild(first);
    for (const { char, bits } of result.surprisal_bits) {
      const span = document.createElement("span");
      span.textContent = char === "\n" ? "\u21b5\n" : char;
      span.title = `${bits.toFixed(2)} bits`;
      span.dataset.bits = bits.toFixed(3);
      span.style.background = `rgba(214, 69, 65, ${Math.min(1, bits / 10).toFixed(3)})`;
      out.appendChild(span);
    }
  } catch (err) {
    $("score-summary").textContent = err.message;
  }
}

$("text").addEventListener("input", () => {
  clearTimeout(typingTimer);
  typingTimer = setTimeout(refreshTree, 120);
});
for (const id of ["width", "depth"]) $(id).addEventListener("change", refreshTree);
$("sample-button").addEventListener("click", sampleText);
$("beam-button").addEventListener("click", beamSearch);
$("score-button").addEventListener("click", scoreText);
refreshTree();
