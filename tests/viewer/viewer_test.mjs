#!/usr/bin/env node
// The viewer in a real browser: Debian's Chromium (software WebGL) driven by playwright-core.
// Usage: node tests/viewer/viewer_test.mjs --url http://127.0.0.1:PORT --lon LON --lat LAT --height H
//            --id FEATURE_ID --category CAT [--out DIR]
// (lon, lat, ellipsoidal height: the midpoint of a known pipe segment.) Opens /viewer, waits for the viewer
// and its tiles, looks straight down at the point, picks there, hides the pipe's category and picks again,
// and on again, searches the id, goes under ground; saves screenshots in DIR. Prints one JSON object on stdout.
// Exit status: 0 when the run completed (the caller judges the result), 2 on usage errors, 1 on failures.
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { chromium } from 'playwright-core';

const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const ARGS = ['--no-sandbox', '--use-angle=swiftshader', '--enable-unsafe-swiftshader', '--disable-background-networking',
  '--disable-component-update', '--disable-sync', '--no-first-run'];

const { values: opt } = parseArgs({
  options: {
    url: { type: 'string' }, lon: { type: 'string' }, lat: { type: 'string' }, height: { type: 'string' },
    id: { type: 'string' }, category: { type: 'string' }, out: { type: 'string', default: 'out/test-artifacts' },
    timeout: { type: 'string', default: '180000' },
  },
});
for (const name of ['url', 'lon', 'lat', 'height', 'id', 'category']) {
  if (opt[name] === undefined) { console.error(`missing --${name}`); process.exit(2); }
}
const base = new URL(opt.url);
const target = { lon: Number(opt.lon), lat: Number(opt.lat), height: Number(opt.height) };
const timeout = Number(opt.timeout);
const timings = {};
const t0 = Date.now();
const lap = (name) => { timings[name] = (Date.now() - t0) / 1000; };

const external = [];
const consoleErrors = [];
const browser = await chromium.launch({ executablePath: CHROMIUM, args: ARGS, headless: true });
try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, deviceScaleFactor: 1 });
  // Everything must come from the service: record and refuse any other host.
  await context.route('**/*', (route) => {
    const url = new URL(route.request().url());
    if (url.protocol === 'data:' || url.protocol === 'blob:' || url.origin === base.origin) return route.continue();
    external.push(url.href);
    return route.abort();
  });
  const page = await context.newPage();
  page.setDefaultTimeout(timeout);
  page.on('console', (m) => { if (m.type() === 'error') consoleErrors.push(m.text()); });
  page.on('pageerror', (e) => consoleErrors.push(String(e)));
  await mkdir(opt.out, { recursive: true });

  await page.goto(new URL('/viewer', base).href);
  await page.waitForFunction(() => window.cimViewer && window.cimViewer.ready);
  await page.evaluate(() => window.cimViewer.ready.then(() => true));
  lap('ready');
  const opened = await page.evaluate(async () => {
    const v = window.cimViewer;
    await v.whenTilesLoaded({ withGround: true });
    return { stats: { ...v.stats }, tilesetLoaded: v.tileset.tilesLoaded };
  });
  lap('tilesLoaded');
  await page.screenshot({ path: join(opt.out, 'viewer-overview.png') });

  // Look straight down at the pipe's midpoint from 40 m above it, then pick at its window position.
  const picked = await page.evaluate(async ({ lon, lat, height }) => {
    const v = window.cimViewer;
    const scene = v.viewer.scene;
    v.viewer.camera.setView({
      destination: Cesium.Cartesian3.fromDegrees(lon, lat, height + 40),
      orientation: { heading: 0, pitch: -Cesium.Math.PI_OVER_TWO, roll: 0 },
    });
    await v.whenTilesLoaded();
    const win = Cesium.SceneTransforms.worldToWindowCoordinates(scene, Cesium.Cartesian3.fromDegrees(lon, lat, height));
    const result = window.cimPick(win.x, win.y);
    // the full stored record comes from the OGC API, as for any other client
    const feature = result ? await v.storeRecord(result) : null;
    const record = feature && { feature_id: feature.properties.feature_id, owner: feature.properties.owner,
      link: Boolean(document.querySelector('#attrs tr.ogc-record a')) };
    return { window: { x: win.x, y: win.y }, result, record };
  }, target);
  lap('picked');
  await page.waitForTimeout(300); // let the highlight render before the screenshot
  await page.screenshot({ path: join(opt.out, 'viewer.png') });

  // The category switch: with the pipe's category off the same pixel must not give that pipe; on again, it must.
  const { hidden, shownAgain } = await page.evaluate(async ({ category, x, y }) => {
    const v = window.cimViewer;
    v.setCategory(category, false);
    await v.whenTilesLoaded();
    const off = window.cimPick(x, y);
    v.setCategory(category, true);
    await v.whenTilesLoaded();
    return { hidden: off, shownAgain: window.cimPick(x, y) };
  }, { category: opt.category, x: picked.window.x, y: picked.window.y });

  // Search by id and fly to it.
  const searched = await page.evaluate(async (id) => {
    const v = window.cimViewer;
    const results = await v.search(id);
    const cam = Cesium.Cartographic.fromCartesian(v.viewer.camera.positionWC);
    return { results, camera: { lon: Cesium.Math.toDegrees(cam.longitude), lat: Cesium.Math.toDegrees(cam.latitude), height: cam.height } };
  }, opt.id);
  lap('searched');

  // Analyses from the panel's code path: burst isolation of the picked pipe (and again with its first valve
  // failing to close), a 3 m pit around it and a cross-section through it; results drawn and downloadable.
  const analyses = await page.evaluate(async ({ id, lon, lat }) => {
    const v = window.cimViewer;
    const brief = (r) => ({ features: r.features, drawn: r.drawn, roles: r.roles, summary: r.summary, result: r.result,
      download: document.getElementById('download').download, entities: v.analysisLayer.entities.values.length });
    v.selectTool('isolation');
    const iso = brief(await v.analyse('isolation', { id }));
    iso.valves = (iso.result.valves || []).map((x) => x.valve_id);
    let second = null;
    if (iso.valves.length) {
      second = brief(await v.analyse('isolation', { id, failed: [iso.valves[0]] }));
      second.valves = (second.result.valves || []).filter((x) => x.state !== 'failed').map((x) => x.valve_id);
    }
    const d = 0.00012; // about 11 m by 13 m around the pipe's midpoint
    const pit = brief(await v.analyse('excavation', { polygon: [[lon - d, lat - d], [lon + d, lat - d], [lon + d, lat + d], [lon - d, lat + d]], depth: 3 }));
    pit.hits = (pit.result.hits || []).map((x) => x.feature_id);
    v.selectTool('section');
    const section = brief(await v.analyse('section', { line: [[lon - 0.0003, lat - 0.0002], [lon + 0.0003, lat + 0.0002]] }));
    const chart = document.getElementById('chart');
    section.chartShown = !chart.hidden && chart.complete && chart.naturalWidth > 0;
    for (const r of [iso, second, pit, section]) if (r) delete r.result;
    return { isolation: iso, second, excavation: pit, section };
  }, { id: opt.id, lon: target.lon, lat: target.lat });
  lap('analyses');
  await page.evaluate(async ({ lon, lat, height }) => {
    const v = window.cimViewer;
    await v.analyse('isolation', { id: v.analysisState.picked ? v.analysisState.picked.id : undefined }).catch(() => null);
    v.viewer.camera.setView({ destination: Cesium.Cartesian3.fromDegrees(lon, lat - 0.0012, height + 90),
      orientation: { heading: 0, pitch: Cesium.Math.toRadians(-45), roll: 0 } });
    await v.whenTilesLoaded();
  }, target);
  await page.waitForTimeout(300);
  await page.screenshot({ path: join(opt.out, 'viewer-analysis.png') });

  // BIM: the submitted office, coloured by its check result.
  const bim = await page.evaluate(async () => {
    const v = window.cimViewer;
    await v.bim.ready;
    const subs = await v.bim.loadSubmissions();
    const shown = subs.length ? await v.bim.showSubmission(subs[subs.length - 1].id, { fly: true }) : null;
    if (v.bim.tileset) await new Promise((resolve) => setTimeout(resolve, 500));
    return { tilesetLoaded: Boolean(v.bim.tileset), submissions: subs.length, shown };
  });
  lap('bim');
  await page.waitForTimeout(300);
  await page.screenshot({ path: join(opt.out, 'viewer-bim.png') });

  // Under ground, for the picture.
  const underground = await page.evaluate(async () => {
    const v = window.cimViewer;
    await v.goUnderground(0);
    await v.whenTilesLoaded({ withGround: true, timeoutMs: 120000 });
    const cam = Cesium.Cartographic.fromCartesian(v.viewer.camera.positionWC);
    return { camera: { lon: Cesium.Math.toDegrees(cam.longitude), lat: Cesium.Math.toDegrees(cam.latitude), height: cam.height },
      groundBelowCamera: v.groundAt(Cesium.Math.toDegrees(cam.longitude), Cesium.Math.toDegrees(cam.latitude)) };
  });
  await page.waitForTimeout(300);
  await page.screenshot({ path: join(opt.out, 'viewer-underground.png') });
  lap('underground');

  console.log(JSON.stringify({ opened, picked, hidden, shownAgain, searched, analyses, bim, underground, external, consoleErrors, timings }));
} catch (err) {
  console.log(JSON.stringify({ error: String(err && err.stack ? err.stack : err), external, consoleErrors, timings }));
  process.exitCode = 1;
} finally {
  await browser.close();
}
