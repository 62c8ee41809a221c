// Gantt view of a run's attempts: one row per step instance, one bar per attempt, on a canvas
// drawn only for the rows in view. Wheel scrolls rows, ctrl+wheel zooms time, drag pans.

import { sizeCanvas } from './dom.js';

const ROW = 18;
const AXIS = 22;
const GUTTER = 190;
const COLORS = {
  running: '#1f6feb', succeeded: '#2da44e', failed: '#cf222e', lost: '#bc4c00', cancelled: '#6e7781',
};

export class Timeline {
  constructor(canvas, { onSelect } = {}) {
    this.canvas = canvas;
    this.ctx = canvas.getContext('2d');
    this.onSelect = onSelect;
    this.rows = [];
    this.top = 0; // first row shown
    this.zoom = 1;
    this.offset = 0; // ms from the start at the left edge
    this.bind();
  }

  /** attempts: RunAttemptView[]; steps: the graph's steps (name, fan_out) by index. */
  setAttempts(attempts, steps, now) {
    const byKey = new Map();
    for (const a of attempts) {
      const key = `${a.step}/${a.instance}`;
      let row = byKey.get(key);
      if (!row) {
        row = { step: a.step, instance: a.instance, name: steps[a.step] ? steps[a.step].name : `step ${a.step}`, job: a.job, bars: [], start: a.started_at };
        byKey.set(key, row);
      }
      row.bars.push(a);
      row.start = Math.min(row.start, a.started_at);
    }
    this.rows = [...byKey.values()].sort((p, q) => p.start - q.start || p.step - q.step || p.instance - q.instance);
    this.fanOut = new Set(steps.map((st, i) => (st.fan_out ? i : -1)).filter((i) => i >= 0));
    this.t0 = this.rows.length ? this.rows[0].start : now;
    let end = this.t0 + 1;
    for (const a of attempts) end = Math.max(end, a.finished_at || now);
    this.t1 = end;
    this.now = now;
    this.resize();
    this.draw();
  }

  bind() {
    const c = this.canvas;
    let drag = null;
    c.addEventListener('wheel', (e) => {
      e.preventDefault();
      if (e.ctrlKey || e.metaKey) {
        const r = c.getBoundingClientRect();
        const at = this.timeAt(e.clientX - r.left);
        this.zoom = Math.min(10000, Math.max(1, this.zoom * Math.exp(-e.deltaY * 0.002)));
        this.offset = 0;
        this.offset = at - this.t0 - (this.timeAt(e.clientX - r.left) - this.t0);
        this.clampOffset();
      } else {
        const maxTop = Math.max(0, this.rows.length - this.visibleRows());
        this.top = Math.min(maxTop, Math.max(0, this.top + Math.sign(e.deltaY) * Math.max(1, Math.round(Math.abs(e.deltaY) / ROW))));
      }
      this.draw();
    }, { passive: false });
    c.addEventListener('pointerdown', (e) => { drag = { x: e.clientX, offset: this.offset, moved: false }; c.setPointerCapture(e.pointerId); });
    c.addEventListener('pointermove', (e) => {
      if (drag) {
        const dx = e.clientX - drag.x;
        if (Math.abs(dx) > 4) drag.moved = true;
        this.offset = drag.offset - dx / this.pxPerMs();
        this.clampOffset();
        this.draw();
        return;
      }
      const hit = this.hit(e);
      c.title = hit ? describe(hit.row, hit.bar) : '';
    });
    c.addEventListener('pointerup', (e) => {
      const click = drag && !drag.moved;
      drag = null;
      const hit = click && this.hit(e);
      if (hit && this.onSelect) this.onSelect(hit.row, hit.bar);
    });
    this.observer = new ResizeObserver(() => { this.resize(); this.draw(); });
    this.observer.observe(c);
  }

  destroy() { this.observer.disconnect(); }

  visibleRows() { return Math.max(1, Math.floor((this.h - AXIS) / ROW)); }

  pxPerMs() { return ((this.w - GUTTER - 10) * this.zoom) / Math.max(1, this.t1 - this.t0); }

  timeAt(px) { return this.t0 + this.offset + (px - GUTTER) / this.pxPerMs(); }

  clampOffset() {
    const span = this.t1 - this.t0;
    this.offset = Math.min(span - span / this.zoom, Math.max(0, this.offset));
  }

  resize() {
    Object.assign(this, sizeCanvas(this.canvas));
  }

  hit(e) {
    const r = this.canvas.getBoundingClientRect();
    const px = e.clientX - r.left;
    const py = e.clientY - r.top;
    if (py < AXIS) return null;
    const row = this.rows[this.top + Math.floor((py - AXIS) / ROW)];
    if (!row) return null;
    if (px < GUTTER) return { row, bar: row.bars[row.bars.length - 1] };
    const t = this.timeAt(px);
    const slack = 3 / this.pxPerMs();
    const bar = row.bars.find((a) => t >= a.started_at - slack && t <= (a.finished_at || this.now) + slack);
    return bar ? { row, bar } : null;
  }

  draw() {
    const g = this.ctx;
    if (!this.w) return;
    g.setTransform(this.dpr, 0, 0, this.dpr, 0, 0);
    g.clearRect(0, 0, this.w, this.h);
    g.font = '11px system-ui, sans-serif';
    g.textBaseline = 'middle';
    if (!this.rows.length) {
      g.fillStyle = '#57606a';
      g.fillText('No attempts yet.', 10, 14);
      this.canvas.dataset.rows = '0';
      return;
    }
    const k = this.pxPerMs();
    const xOf = (t) => GUTTER + (t - this.t0 - this.offset) * k;
    // Time axis: about one tick per 100 px, at a round step.
    const span = (this.w - GUTTER) / k;
    const step = niceStep(span / Math.max(1, (this.w - GUTTER) / 100));
    g.fillStyle = '#57606a';
    g.strokeStyle = '#eaeef2';
    g.lineWidth = 1;
    const first = Math.ceil((this.offset) / step) * step;
    for (let t = first; t <= this.offset + span; t += step) {
      const x = Math.round(xOf(this.t0 + t)) + 0.5;
      g.beginPath(); g.moveTo(x, AXIS - 4); g.lineTo(x, this.h); g.stroke();
      g.fillText(fmtOffset(t), x + 3, 9);
    }
    const n = this.visibleRows();
    for (let r = 0; r < n; r += 1) {
      const row = this.rows[this.top + r];
      if (!row) break;
      const y = AXIS + r * ROW;
      if ((this.top + r) % 2) { g.fillStyle = '#f6f8fa'; g.fillRect(0, y, this.w, ROW); }
      for (const a of row.bars) {
        const x0 = Math.max(GUTTER, xOf(a.started_at));
        const x1 = Math.min(this.w, xOf(a.finished_at || this.now));
        if (x1 < GUTTER || x0 > this.w) continue;
        g.fillStyle = COLORS[a.state] || '#8c959f';
        g.fillRect(x0, y + 3, Math.max(2, x1 - x0), ROW - 6);
      }
      g.fillStyle = '#ffffff';
      g.fillRect(0, y, GUTTER - 4, ROW);
      g.fillStyle = '#24292f';
      const label = this.fanOut.has(row.step) ? `${row.name}[${row.instance}]` : row.name;
      g.fillText(label.length > 28 ? `${label.slice(0, 27)}…` : label, 6, y + ROW / 2);
    }
    g.fillStyle = '#57606a';
    const shown = Math.min(this.rows.length, this.top + n);
    g.fillText(`${this.top + 1}–${shown} of ${this.rows.length}`, 6, 9);
    this.canvas.dataset.rows = String(this.rows.length);
  }
}

function describe(row, a) {
  const end = a.finished_at ? `${a.finished_at - a.started_at} ms` : 'running';
  return `${row.name}${row.instance ? `[${row.instance}]` : ''} · attempt ${a.id} on ${a.node} · ${a.state} · ${end}`;
}

function niceStep(raw) {
  const p = 10 ** Math.floor(Math.log10(Math.max(raw, 1e-3)));
  for (const m of [1, 2, 5, 10]) if (m * p >= raw) return m * p;
  return 10 * p;
}

function fmtOffset(ms) {
  if (ms < 1000) return `+${Math.round(ms)} ms`;
  if (ms < 60000) return `+${(ms / 1000).toFixed(ms < 10000 ? 1 : 0)} s`;
  return `+${Math.floor(ms / 60000)} min ${Math.round((ms % 60000) / 1000)} s`;
}
