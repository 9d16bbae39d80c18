/**
 * layout.js: where each tile of the call goes, and how large.
 *
 * It exists so that the grid, speaker view, pinning, screen shares and
 * calls of up to 50 share one set of rules, apart from the tiles' content
 * (call-ui.js):
 * - the *featured* tiles go large on a row of their own, the others in a
 *   band under them: a pinned tile (any view); else shared screens (they go
 *   large by themselves; the presenter's camera stays a tile); else, in
 *   speaker view, the one who speaks (the last one who did while nobody
 *   does);
 * - the other tiles take the column count that makes them largest, 16:9
 *   (portrait 3:4 side by side on a phone), never smaller than a minimum
 *   width: what does not fit goes onto pages, with previous/next buttons;
 * - tiles are placed with CSS `order` and `hidden`, never moved in the DOM,
 *   so no video element restarts.
 * Tiles are the grid's `.tile` children; each has `data-key` (a socket id,
 * `screen:<id>` for a shared screen through the media server) and
 * `data-self` on our own.
 */

const GAP = 8; // px, as in the stylesheet
/** Smallest tile widths (px): grid, band under a featured tile, phone grid. */
const MIN_W = 176;
const BAND_MIN_W = 128;
const PHONE_MIN_W = 120;

export class CallLayout {
  /**
   * grid: the tiles' container; pager: { nav, prev, next, label } (the
   * page controls); onChange(): after each layout (the tiles' sizes may
   * have changed); label(page, pages): the pager's text.
   */
  constructor({ grid, pager, onChange, label }) {
    this.grid = grid;
    this.pager = pager;
    this.onChange = onChange;
    this.label = label;
    this.view = "grid";
    try {
      if (localStorage.getItem("noom.view") === "speaker") this.view = "speaker";
    } catch {
      /* storage refused: grid */
    }
    this.pinned = null; // data-key of the pinned tile
    this.speaker = null; // socket id of who speaks (or spoke last)
    this.page = 0;
    pager.prev.addEventListener("click", () => this.turn(-1));
    pager.next.addEventListener("click", () => this.turn(1));
  }

  setView(view) {
    this.view = view === "speaker" ? "speaker" : "grid";
    try {
      localStorage.setItem("noom.view", this.view);
    } catch {
      /* not kept */
    }
    this.update();
  }

  /** Pins the tile `key`, or unpins it if it is pinned. */
  togglePin(key) {
    this.pinned = this.pinned === key ? null : key;
    this.update();
  }

  /** Who speaks now (loudest first); the last speaker stays while nobody does. */
  setSpeakers(ids) {
    const next = ids.find((id) => this.tile(id) && !this.tile(id).dataset.self);
    if (next && next !== this.speaker) {
      this.speaker = next;
      if (this.view === "speaker" && !this.pinned) this.update();
    }
  }

  /** A tile's key changed (its peer came back under a new socket id). */
  rekey(from, to) {
    if (this.pinned === from) this.pinned = to;
    if (this.speaker === from) this.speaker = to;
  }

  turn(delta) {
    this.page = Math.max(0, this.page + delta);
    this.update();
  }

  tiles() {
    return [...this.grid.children].filter((el) => el.classList.contains("tile"));
  }

  tile(key) {
    return this.tiles().find((el) => el.dataset.key === key) || null;
  }

  /** The tiles that go large now (see the module comment). */
  featured(tiles) {
    const byKey = new Map(tiles.map((el) => [el.dataset.key, el]));
    if (this.pinned && byKey.has(this.pinned)) return [byKey.get(this.pinned)];
    this.pinned = null;
    // A shared screen has a tile of its own; until its track arrives, the
    // sharer's tile stands for it.
    const screens = tiles.filter(
      (el) =>
        el.classList.contains("tile-screen") ||
        (el.dataset.screen === "true" && !el.dataset.self && !byKey.has(`screen:${el.dataset.key}`)),
    );
    if (screens.length) return screens;
    if (this.view !== "speaker") return [];
    const remote = tiles.filter((el) => !el.dataset.self);
    const speaker = (this.speaker && byKey.get(this.speaker)) || remote[0] || tiles[0];
    return speaker ? [speaker] : [];
  }

  update() {
    const grid = this.grid;
    const tiles = this.tiles();
    const featured = this.featured(tiles);
    const rest = tiles.filter((el) => !featured.includes(el));
    grid.dataset.count = String(tiles.length);
    grid.dataset.view = this.view;
    grid.dataset.presenting = String(featured.some((el) => el.dataset.screen === "true"));
    for (const el of tiles) {
      const big = featured.includes(el);
      el.classList.toggle("tile-featured", big);
      el.style.order = big ? "-1" : "";
      if (!big) {
        el.style.width = "";
        el.style.marginLeft = "";
        el.style.marginRight = "";
      }
      const pin = el.querySelector(".tile-pin");
      if (pin) pin.setAttribute("aria-pressed", String(this.pinned === el.dataset.key));
    }
    const width = grid.clientWidth;
    let height = grid.clientHeight;
    if (!width || !height) return;
    if (featured.length) {
      const band = rest.length ? Math.max(96, Math.floor(height * 0.24)) : 0;
      const bigHeight = height - band - (rest.length ? GAP : 0);
      const n = featured.length;
      const w = Math.max(80, Math.floor(Math.min((width - GAP * (n - 1)) / n, (bigHeight * 16) / 9)));
      // Margins fill the row, so the other tiles start a row of their own.
      const side = `${Math.max(0, Math.floor((width - n * w - GAP * (n - 1)) / 2))}px`;
      featured.forEach((el, i) => {
        el.hidden = false;
        el.style.width = `${w}px`;
        el.style.marginLeft = i === 0 ? side : "";
        el.style.marginRight = i === n - 1 ? side : "";
      });
      height = band;
    }
    this.placeRest(rest, width, height, featured.length > 0);
    this.onChange();
  }

  /** Lays out the tiles that are not featured in width x height, paging what does not fit. */
  placeRest(rest, width, height, band) {
    const phone = width < 600;
    const ratio = phone && rest.length > 1 ? 3 / 4 : 16 / 9;
    const minW = band ? BAND_MIN_W : phone ? PHONE_MIN_W : MIN_W;
    const maxCols = Math.max(1, Math.floor((width + GAP) / (minW + GAP)));
    const maxRows = Math.max(1, Math.floor((height + GAP) / (minW / ratio + GAP)));
    const perPage = maxCols * maxRows;
    const pages = Math.max(1, Math.ceil(rest.length / perPage));
    this.page = Math.min(this.page, pages - 1);
    const start = this.page * perPage;
    const shown = rest.filter((el, i) => {
      const on = i >= start && i < start + perPage;
      el.hidden = !on;
      return on;
    });
    const { nav, prev, next, label } = this.pager;
    nav.hidden = pages < 2;
    prev.disabled = this.page === 0;
    next.disabled = this.page >= pages - 1;
    label.textContent = pages > 1 ? this.label(this.page + 1, pages) : "";
    this.grid.dataset.pages = String(pages);
    if (!shown.length) return;
    this.grid.style.setProperty("--tile-ratio", ratio === 16 / 9 ? "16 / 9" : "3 / 4");
    let best = { w: 0, cols: 1 };
    for (let cols = 1; cols <= shown.length; cols += 1) {
      const rows = Math.ceil(shown.length / cols);
      const w = Math.min((width - GAP * (cols - 1)) / cols, ((height - GAP * (rows - 1)) / rows) * ratio);
      if (w > best.w + 0.5) best = { w, cols };
    }
    this.grid.style.setProperty("--tile-w", `${Math.max(60, Math.floor(best.w))}px`);
    this.grid.dataset.cols = String(best.cols);
  }
}
