// A flow's DAG on a canvas: layered layout computed in O(steps + edges), drawing limited to
// what is in view, so 10,000 steps stay smooth. Drag to pan, wheel to zoom, click to select.

import { sizeCanvas } from './dom.js';

export const STATE_COLORS = {
  pending: '#d0d7de', running: '#1f6feb', succeeded: '#2da44e', failed: '#cf222e',
  skipped: '#eaeef2', cancelled: '#6e7781', waiting_approval: '#d4a72c',
};

const DARK_TEXT = new Set(['pending', 'skipped', 'waiting_approval']);
const COL_W = 210; // world units between columns
const NODE_W = 170;
const ROW_H = 44;
const NODE_H = 32;

/**
 * Layers steps by longest path from a root (columns, left to right), then orders each column
 * by the mean row of its parents (one barycentre sweep) to keep edges short.
 */
export function layout(steps) {
  const n = steps.length;
  const children = Array.from({ length: n }, () => []);
  const indeg = new Int32Array(n);
  for (let i = 0; i < n; i += 1) {
    for (const d of steps[i].depends) { children[d].push(i); indeg[i] += 1; }
  }
  const layer = new Int32Array(n);
  const queue = [];
  for (let i = 0; i < n; i += 1) if (indeg[i] === 0) queue.push(i);
  for (let qi = 0; qi < queue.length; qi += 1) {
    const p = queue[qi];
    for (const c of children[p]) {
      if (layer[p] + 1 > layer[c]) layer[c] = layer[p] + 1;
      indeg[c] -= 1;
      if (indeg[c] === 0) queue.push(c);
    }
  }
  const cols = [];
  for (const i of queue) { (cols[layer[i]] || (cols[layer[i]] = [])).push(i); }
  const row = new Float64Array(n);
  for (const col of cols) {
    const key = new Map();
    for (const i of col) {
      const ds = steps[i].depends;
      key.set(i, ds.length ? ds.reduce((a, d) => a + row[d], 0) / ds.length : i);
    }
    col.sort((a, b) => key.get(a) - key.get(b) || a - b);
    col.forEach((i, r) => { row[i] = r; });
  }
  const tallest = cols.reduce((m, c) => Math.max(m, c.length), 0);
  const x = new Float64Array(n);
  const y = new Float64Array(n);
  const colTop = cols.map((c) => ((tallest - c.length) * ROW_H) / 2);
  cols.forEach((col, l) => col.forEach((i, r) => { x[i] = l * COL_W; y[i] = colTop[l] + r * ROW_H; }));
  return { cols, colTop, x, y, children, width: Math.max(1, cols.length * COL_W - (COL_W - NODE_W)), height: Math.max(1, tallest * ROW_H) };
}

export class DagView {
  constructor(canvas, steps, { onSelect, onOpen } = {}) {
    this.canvas = canvas;
    this.ctx = canvas.getContext('2d');
    this.onSelect = onSelect;
    this.onOpen = onOpen;
    this.selected = -1;
    this.setSteps(steps);
    this.bind();
    this.resize();
    this.fit();
  }

  setSteps(steps) {
    const same = this.steps && this.steps.length === steps.length
      && this.steps.every((s, i) => s.name === steps[i].name);
    this.steps = steps;
    this.index = new Map(steps.map((s, i) => [s.name, i]));
    if (!same) this.lay = layout(steps);
    this.draw();
  }

  bind() {
    const c = this.canvas;
    let drag = null;
    c.addEventListener('pointerdown', (e) => {
      drag = { x: e.clientX, y: e.clientY, tx: this.tx, ty: this.ty, moved: false };
      c.setPointerCapture(e.pointerId);
    });
    c.addEventListener('pointermove', (e) => {
      if (drag) {
        const dx = e.clientX - drag.x;
        const dy = e.clientY - drag.y;
        if (Math.abs(dx) + Math.abs(dy) > 4) drag.moved = true;
        this.tx = drag.tx + dx;
        this.ty = drag.ty + dy;
        this.draw();
      } else {
        const i = this.hit(e);
        c.title = i >= 0 ? `${this.steps[i].name}: ${this.steps[i].state.replace('_', ' ')}` : '';
        c.style.cursor = i >= 0 ? 'pointer' : 'grab';
      }
    });
    c.addEventListener('pointerup', (e) => {
      const wasClick = drag && !drag.moved;
      drag = null;
      if (wasClick) this.select(this.hit(e), false);
    });
    c.addEventListener('dblclick', (e) => {
      const i = this.hit(e);
      if (i >= 0 && this.onOpen) this.onOpen(this.steps[i]);
    });
    c.addEventListener('wheel', (e) => {
      e.preventDefault();
      const r = c.getBoundingClientRect();
      const mx = e.clientX - r.left;
      const my = e.clientY - r.top;
      const f = Math.exp(-e.deltaY * 0.0015);
      const s = Math.min(4, Math.max(this.minScale(), this.scale * f));
      this.tx = mx - ((mx - this.tx) * s) / this.scale;
      this.ty = my - ((my - this.ty) * s) / this.scale;
      this.scale = s;
      this.draw();
    }, { passive: false });
    this.observer = new ResizeObserver(() => { this.resize(); this.draw(); });
    this.observer.observe(c);
  }

  destroy() { this.observer.disconnect(); }

  resize() {
    Object.assign(this, sizeCanvas(this.canvas));
  }

  minScale() {
    return Math.min(0.5, (this.w / (this.lay.width + 40)) * 0.5, (this.h / (this.lay.height + 40)) * 0.5);
  }

  fit() {
    const s = Math.min(1, (this.w - 40) / this.lay.width, (this.h - 40) / this.lay.height);
    this.scale = Math.max(s, 1e-4);
    this.tx = (this.w - this.lay.width * this.scale) / 2;
    this.ty = (this.h - this.lay.height * this.scale) / 2;
    this.draw();
  }

  /** Centres the view on step i at a readable zoom and selects it. */
  focus(i) {
    if (i < 0) return;
    this.scale = Math.max(this.scale, 0.8);
    this.tx = this.w / 2 - (this.lay.x[i] + NODE_W / 2) * this.scale;
    this.ty = this.h / 2 - (this.lay.y[i] + NODE_H / 2) * this.scale;
    this.select(i, true);
  }

  select(i, quiet) {
    this.selected = i;
    this.draw();
    if (this.onSelect && i >= 0) this.onSelect(this.steps[i], quiet);
  }

  /** The step under a pointer event, or -1: column from x, row from y, no search. */
  hit(e) {
    const r = this.canvas.getBoundingClientRect();
    const wx = (e.clientX - r.left - this.tx) / this.scale;
    const wy = (e.clientY - r.top - this.ty) / this.scale;
    const l = Math.floor(wx / COL_W);
    const col = this.lay.cols[l];
    if (!col || wx - l * COL_W > NODE_W) return -1;
    const rr = Math.floor((wy - this.lay.colTop[l]) / ROW_H);
    if (rr < 0 || rr >= col.length || wy - this.lay.colTop[l] - rr * ROW_H > NODE_H) return -1;
    return col[rr];
  }

  /** Client coordinates of a step's centre (for tests and for scrolling to it). */
  positionOf(name) {
    const i = this.index.get(name);
    if (i === undefined) return null;
    const r = this.canvas.getBoundingClientRect();
    return {
      x: r.left + this.tx + (this.lay.x[i] + NODE_W / 2) * this.scale,
      y: r.top + this.ty + (this.lay.y[i] + NODE_H / 2) * this.scale,
    };
  }

  draw() {
    if (!this.lay || !this.w) return;
    const g = this.ctx;
    const { x, y, cols, colTop } = this.lay;
    const s = this.scale;
    g.setTransform(this.dpr, 0, 0, this.dpr, 0, 0);
    g.clearRect(0, 0, this.w, this.h);
    g.setTransform(this.dpr * s, 0, 0, this.dpr * s, this.dpr * this.tx, this.dpr * this.ty);
    const x0 = -this.tx / s;
    const y0 = -this.ty / s;
    const x1 = x0 + this.w / s;
    const y1 = y0 + this.h / s;
    const firstCol = Math.max(0, Math.floor((x0 - NODE_W) / COL_W));
    const lastCol = Math.min(cols.length - 1, Math.floor(x1 / COL_W) + 1);
    // Every edge is tested against the view (cheap) and the visible ones drawn in one path.
    g.beginPath();
    g.lineWidth = 1 / Math.max(s, 0.5);
    g.strokeStyle = '#8c959f';
    const seen = this.selected;
    {
      for (let c = 0; c < this.steps.length; c += 1) {
        for (const p of this.steps[c].depends) {
          const ax = x[p] + NODE_W; const ay = y[p] + NODE_H / 2;
          const bx = x[c]; const by = y[c] + NODE_H / 2;
          if (Math.max(ay, by) < y0 || Math.min(ay, by) > y1 || bx < x0 || ax > x1) continue;
          g.moveTo(ax, ay);
          const mx = (ax + bx) / 2;
          g.bezierCurveTo(mx, ay, mx, by, bx, by);
        }
      }
    }
    g.stroke();
    const detail = s >= 0.35;
    g.font = '12px system-ui, sans-serif';
    g.textBaseline = 'middle';
    for (let l = firstCol; l <= lastCol; l += 1) {
      const col = cols[l];
      const r0 = Math.max(0, Math.floor((y0 - colTop[l]) / ROW_H));
      const r1 = Math.min(col.length - 1, Math.ceil((y1 - colTop[l]) / ROW_H));
      for (let r = r0; r <= r1; r += 1) {
        const i = col[r];
        const st = this.steps[i];
        g.fillStyle = STATE_COLORS[st.state] || '#d0d7de';
        if (!detail) { g.fillRect(x[i], y[i], NODE_W, NODE_H); continue; }
        if (st.fan_out) {
          // A fan-out step is drawn as a stack of cards.
          const fill = g.fillStyle;
          g.globalAlpha = 0.45;
          g.beginPath();
          g.roundRect(x[i] + 5, y[i] - 4, NODE_W, NODE_H, 6);
          g.fill();
          g.globalAlpha = 1;
          g.fillStyle = fill;
        }
        g.beginPath();
        g.roundRect(x[i], y[i], NODE_W, NODE_H, 6);
        g.fill();
        if (st.approval) {
          g.strokeStyle = '#24292f';
          g.setLineDash([4, 3]);
          g.lineWidth = 1.5;
          g.stroke();
          g.setLineDash([]);
        }
        g.fillStyle = DARK_TEXT.has(st.state) ? '#24292f' : '#ffffff';
        const count = st.fan_out ? fanCount(st) : '';
        let label = st.name;
        const room = NODE_W - 14 - (count ? g.measureText(count).width + 6 : 0);
        if (g.measureText(label).width > room) {
          while (label.length > 1 && g.measureText(`${label}…`).width > room) label = label.slice(0, -1);
          label += '…';
        }
        g.fillText(label, x[i] + 7, y[i] + NODE_H / 2);
        if (count) g.fillText(count, x[i] + NODE_W - 7 - g.measureText(count).width, y[i] + NODE_H / 2);
      }
    }
    if (seen >= 0) {
      g.strokeStyle = '#0969da';
      g.lineWidth = 3 / Math.max(s, 0.2);
      g.strokeRect(x[seen] - 3, y[seen] - 3, NODE_W + 6, NODE_H + 6);
    }
    this.canvas.dataset.drawn = String(Number(this.canvas.dataset.drawn || 0) + 1);
  }
}

/** "done/total" for a fan-out step. */
export function fanCount(st) {
  const counts = st.instances || {};
  const total = Object.values(counts).reduce((a, b) => a + b, 0);
  if (!total) return '';
  const done = (counts.succeeded || 0) + (counts.failed || 0) + (counts.skipped || 0) + (counts.cancelled || 0);
  return `${done}/${total}`;
}
