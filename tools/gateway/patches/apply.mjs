// The reviewed patches to the pinned gateway, applied by `npm ci --prefix tools/gateway` (postinstall).
//
// Why not a patch-package diff: the published bundle (build/start-server.js) is one 482 KB line, so a
// line diff of it holds the whole bundle twice (966 KB) and shows a reviewer nothing. Each patch here
// is instead an exact text replacement: the bundle must hold `before` exactly once (or `after`
// exactly once: already applied), else the install fails and names the patch. Dependency-free.
//
//   node patches/apply.mjs [NODE_MODULES]   (default: tools/gateway/node_modules)
//
// When to drop a patch: see tools/gateway/README.md.

import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

export const MARKER = "// portkey-thread-updater: patched (tools/gateway/patches/apply.mjs)";

export const PATCHES = [
  {
    name: "gateway PR #1390 (issue #1389): updateHeaders copies the Response before adding headers",
    package: "@portkey-ai/gateway",
    version: "1.15.2",
    file: "build/start-server.js",
    // ResponseService.updateHeaders appended x-portkey-* headers to the upstream fetch() Response,
    // whose headers are immutable (fetch spec guard): every proxied call threw `TypeError: immutable`
    // after the upstream had applied it, and the gateway answered 500. The fix builds a new Response
    // with a mutable copy of the headers (body, status and statusText unchanged), and create() uses
    // the Response updateHeaders returns.
    replacements: [
      [
        "updateHeaders(e,t,a){return e.headers.append(",
        "updateHeaders(e,t,a){return(e=new Response(e.body,{status:e.status,statusText:e.statusText," +
          "headers:new Headers(e.headers)})).headers.append(",
      ],
      [
        "this.updateHeaders(i,n.cacheStatus,o),{response:i,",
        "i=this.updateHeaders(i,n.cacheStatus,o),{response:i,",
      ],
    ],
  },
];

function count(text, part) {
  return text.split(part).length - 1;
}

/** Apply every patch under `modules` (a node_modules folder); returns what was done, throws on a mismatch. */
export function applyAll(modules) {
  const done = [];
  for (const patch of PATCHES) {
    const root = join(modules, patch.package);
    const manifest = join(root, "package.json");
    if (!existsSync(manifest)) {
      throw new Error(`${patch.package} is not installed under ${modules}`);
    }
    const version = JSON.parse(readFileSync(manifest, "utf8")).version;
    if (version !== patch.version) {
      throw new Error(
        `${patch.package} ${version} is installed, but the patch "${patch.name}" is for ${patch.version}: ` +
          "check whether that release still needs it, then update or drop it (tools/gateway/README.md)",
      );
    }
    const path = join(root, patch.file);
    const original = readFileSync(path, "utf8");
    let text = original;
    for (const [before, after] of patch.replacements) {
      if (count(text, after) === 1) continue; // applied already
      if (count(text, before) !== 1) {
        throw new Error(
          `${patch.package}/${patch.file}: expected one ${JSON.stringify(before)}, found ` +
            `${count(text, before)}: the patch "${patch.name}" no longer fits`,
        );
      }
      text = text.replace(before, after);
    }
    if (!text.includes(MARKER)) text = `${text.replace(/\n?$/, "\n")}${MARKER}\n`;
    if (text !== original) writeFileSync(path, text);
    done.push(`${text === original ? "already applied" : "applied"}: ${patch.name}`);
  }
  return done;
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const here = dirname(fileURLToPath(import.meta.url));
  const modules = resolve(process.argv[2] ?? join(here, "..", "node_modules"));
  try {
    for (const line of applyAll(modules)) console.log(`gateway patch ${line}`);
  } catch (error) {
    console.error(`gateway patch failed: ${error.message}`);
    process.exit(1);
  }
}
