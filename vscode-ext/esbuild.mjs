// Bundles the extension and vscode-languageclient into one CommonJS file, dist/extension.js.
// `node esbuild.mjs --production` minifies and drops the source map (what the .vsix ships).
import * as esbuild from 'esbuild';

const production = process.argv.includes('--production');

await esbuild.build({
  entryPoints: ['src/extension.ts'],
  outfile: 'dist/extension.js',
  bundle: true,
  format: 'cjs',
  platform: 'node',
  // The extension host of VS Code 1.91 runs Node 20.
  target: 'node20',
  external: ['vscode'],
  minify: production,
  sourcemap: !production,
  sourcesContent: false,
  logLevel: 'info',
});
