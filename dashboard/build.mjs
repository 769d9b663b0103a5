// Builds the dashboard into appliance/http/dashboard_dist/ (docs/dashboard.md):
// hashed, minified ES modules + CSS, their gzip copies, index.html naming them,
// and sizes.json (what a first load transfers, compressed).
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { gzipSync } from 'node:zlib';
import path from 'node:path';
import * as esbuild from 'esbuild';

const here = path.dirname(new URL(import.meta.url).pathname);
const dist = path.resolve(here, '../appliance/http/dashboard_dist');
const assets = path.join(dist, 'assets');
rmSync(dist, { recursive: true, force: true });
mkdirSync(assets, { recursive: true });

const result = await esbuild.build({
  absWorkingDir: here,
  entryPoints: { app: 'src/main.js', style: 'src/style.css' },
  bundle: true,
  splitting: true, // the terminal (xterm.js) loads only on the terminal page
  format: 'esm',
  minify: true,
  target: ['es2020', 'chrome100', 'firefox100', 'safari15'],
  outdir: assets,
  entryNames: '[name]-[hash]',
  chunkNames: 'chunk-[hash]',
  assetNames: '[name]-[hash]',
  legalComments: 'none',
  metafile: true,
  logLevel: 'warning',
});

const outputs = Object.entries(result.metafile.outputs);
const entry = (name) => {
  const found = outputs.find(([, o]) => o.entryPoint === name);
  if (!found) throw new Error(`no output for ${name}`);
  return path.basename(found[0]);
};
const app = entry('src/main.js');
const css = entry('src/style.css');
const prefix = '/dashboard/assets/';
const staticImports = (file) => result.metafile.outputs[path.relative(here, path.join(assets, file))]
  .imports.filter((i) => i.kind === 'import-statement').map((i) => path.basename(i.path));

const html = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light dark">
<title>Appliance</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="${prefix}${css}">
${staticImports(app).map((f) => `<link rel="modulepreload" href="${prefix}${f}">`).join('\n')}
<script type="module" src="${prefix}${app}"></script>
</head>
<body>
<div id="app"><p class="loading">Loading…</p></div>
<noscript>The dashboard needs JavaScript. The API works without it: see /openapi.json.</noscript>
</body>
</html>
`;
writeFileSync(path.join(dist, 'index.html'), html);

const sizes = { files: {}, first_load: { raw: 0, gzip: 0, files: [] } };
for (const [file] of outputs) {
  const name = path.basename(file);
  const body = readFileSync(path.join(here, file));
  const gz = gzipSync(body, { level: 9 });
  writeFileSync(path.join(here, file + '.gz'), gz);
  sizes.files[name] = { raw: body.length, gzip: gz.length };
}
const firstLoad = [['index.html', Buffer.from(html)], ...[app, css, ...staticImports(app)]
  .map((f) => [f, readFileSync(path.join(assets, f))])];
for (const [name, body] of firstLoad) {
  sizes.first_load.raw += body.length;
  sizes.first_load.gzip += gzipSync(body, { level: 9 }).length;
  sizes.first_load.files.push(name);
}
writeFileSync(path.join(dist, 'sizes.json'), JSON.stringify(sizes, null, 1) + '\n');
console.log(`dashboard built: first load ${sizes.first_load.raw} B, ${sizes.first_load.gzip} B gzip`);
