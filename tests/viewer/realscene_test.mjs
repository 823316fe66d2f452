#!/usr/bin/env node
// The real-scene layers in a real browser: Debian's Chromium (software WebGL) driven by playwright-core.
// Usage: node tests/viewer/realscene_test.mjs --url http://127.0.0.1:PORT [--out DIR]
// Opens /viewer, waits for the pipes, the buildings and every real-scene layer (orthophoto imagery, DEM terrain,
// point clouds, meshes), looks at the district from above and saves a screenshot; samples the globe's height
// at given places (DEM terrain), then flies to each 3D layer and picks the middle of the screen.
// Prints one JSON object on stdout. Exit status: 0 when the run completed (the caller judges the result).
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { chromium } from 'playwright-core';

const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const ARGS = ['--no-sandbox', '--use-angle=swiftshader', '--enable-unsafe-swiftshader', '--disable-background-networking',
  '--disable-component-update', '--disable-sync', '--no-first-run'];

const { values: opt } = parseArgs({
  options: {
    url: { type: 'string' }, out: { type: 'string', default: 'out/test-artifacts' },
    samples: { type: 'string', default: '[]' }, timeout: { type: 'string', default: '240000' },
  },
});
if (!opt.url) { console.error('missing --url'); process.exit(2); }
const base = new URL(opt.url);
const samples = JSON.parse(opt.samples); // [[lon, lat], ...] where the globe height is read
const timeout = Number(opt.timeout);

const external = [];
const consoleErrors = [];
const browser = await chromium.launch({ executablePath: CHROMIUM, args: ARGS, headless: true });
try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, deviceScaleFactor: 1 });
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
  await page.waitForFunction(() => window.cimViewer && window.cimViewer.realscene && window.cimViewer.realscene.ready);
  const scene = await page.evaluate(async () => {
    const v = window.cimViewer;
    await v.ready;
    const rs = await v.realscene.ready;
    await v.overview(0);
    await rs.whenLoaded();
    await v.whenTilesLoaded();
    if (v.bim && v.bim.ready) await v.bim.ready.catch(() => null);
    const terrain = v.viewer.terrainProvider;
    return {
      layers: rs.layers.map((l) => ({ id: l.id, kind: l.kind, role: l.role, bbox: l.bbox })),
      terrainIsDem: terrain instanceof Cesium.CesiumTerrainProvider,
      imageryLayers: v.viewer.imageryLayers.length,
      imageryTiles: (await rs.whenLoaded()).imageryTiles,
      tilesets: [...rs.tilesets.entries()].map(([id, t]) => ({ id, loaded: t.tilesLoaded, visible: t.root ? t.root.contentReady || t.statistics.selected : 0, selected: t.statistics.selected })),
      pipesLoaded: v.tileset.tilesLoaded, pipesVisible: v.stats.tilesVisible,
      buildings: Boolean(v.bim && v.bim.tileset),
    };
  });
  await page.screenshot({ path: join(opt.out, 'viewer-realscene.png') });
  // points coloured by class, ground points shown: the style expressions must hold for the glTF point tiles
  scene.classStyle = await page.evaluate(async () => {
    const rs = window.cimViewer.realscene;
    rs.pointStyle('class', true);
    await rs.whenLoaded();
    const styled = [...rs.tilesets.values()].filter((t) => t.style);
    return { styled: styled.length };
  });
  await page.screenshot({ path: join(opt.out, 'viewer-realscene-classes.png') });
  await page.evaluate(() => window.cimViewer.realscene.pointStyle('rgb', false));

  // the globe's surface where asked: DEM terrain (ellipsoidal heights)
  const heights = await page.evaluate(async (points) => {
    const v = window.cimViewer;
    const cartos = points.map(([lon, lat]) => Cesium.Cartographic.fromDegrees(lon, lat));
    const sampled = await Cesium.sampleTerrainMostDetailed(v.viewer.terrainProvider, cartos);
    return sampled.map((c) => c.height);
  }, samples);

  // each 3D layer: fly to it, pick the middle of the screen, report where the pick landed
  const picks = [];
  for (const layer of scene.layers.filter((l) => l.kind !== 'raster')) {
    const pick = await page.evaluate(async (id) => {
      const v = window.cimViewer;
      const rs = v.realscene;
      for (const other of rs.tilesets.keys()) rs.setShown(other, other === id);
      await rs.flyTo(id);
      await rs.whenLoaded();
      const canvas = v.viewer.scene.canvas;
      const scene = v.viewer.scene;
      let hit = null;
      // from the middle outwards, the first pixel that hits this layer
      const spots = [];
      for (let i = 0; i <= 8; i++) for (let j = 0; j <= 8; j++) spots.push([0.3 + 0.05 * i, 0.3 + 0.05 * j]);
      spots.sort((a, b) => Math.hypot(a[0] - 0.5, a[1] - 0.5) - Math.hypot(b[0] - 0.5, b[1] - 0.5));
      for (const [fx, fy] of spots) {
        const at = new Cesium.Cartesian2(canvas.clientWidth * fx, canvas.clientHeight * fy);
        const picked = scene.pick(at);
        const world = scene.pickPosition(at);
        const mine = picked && (picked.primitive === rs.tilesets.get(id)
          || (picked.content && picked.content.tileset === rs.tilesets.get(id)));
        if (mine && world) {
          const c = Cesium.Cartographic.fromCartesian(world);
          hit = { lon: Cesium.Math.toDegrees(c.longitude), lat: Cesium.Math.toDegrees(c.latitude), height: c.height };
          break;
        }
      }
      for (const other of rs.tilesets.keys()) rs.setShown(other, true);
      return hit;
    }, layer.id);
    await page.screenshot({ path: join(opt.out, `viewer-realscene-${layer.id}.png`) });
    picks.push({ id: layer.id, bbox: layer.bbox, pick });
  }
  console.log(JSON.stringify({ scene, heights, picks, external, consoleErrors }));
} finally {
  await browser.close();
}
