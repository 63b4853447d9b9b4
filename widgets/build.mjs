// Bundles every widget front-end, with all its dependencies, into
// ownkernel/ui/static/<name>.js (committed; CI rebuilds and diffs them).
import * as esbuild from "esbuild";

await esbuild.build({
  entryPoints: ["src/editor.js", "src/chat.js", "src/peers.js", "src/docview.js",
    "src/grid.js", "src/items.js", "src/budget.js",
    "src/history.js", "src/comments.js", "src/deck.js", "src/call.js"],
  outdir: "../ownkernel/ui/static",
  bundle: true,
  format: "esm",
  minify: true,
  target: "es2020",
  legalComments: "none",
  logLevel: "warning",
});
