// Run the pole node's test vectors under a real MicroPython: the WebAssembly port from npm,
// under Node.js. Usage:
//   node run_vectors.mjs FIRMWARE_DIR FILE.py...
// FIRMWARE_DIR holds the firmware modules as .py or as .mpy (from mpy-cross); they are laid
// out as the package boards.pole_node in the interpreter's in-memory file system (as in the
// checkout) and again as /pole_node (as on the board, for the boot file). Each FILE
// goes into the package tests.micropython (as in the checkout, so the vectors import their
// helpers the same way under both interpreters), except machine.py, the stand-in for the
// board's built-in module, which goes to the top. The test_* functions of every FILE whose
// name starts with "vectors" or "hw_vectors" run. Prints one JSON line per test
// {"name": "module.test", "ok", "error"} and a last line {"implementation", "passed",
// "failed"}. Exit 0 when every test passed, 1 when one failed, 2 on a usage or load error.
import { readFileSync, readdirSync } from "node:fs";
import { basename, join } from "node:path";
import { loadMicroPython } from "@micropython/micropython-webassembly-pyscript";

const [firmwareDir, ...files] = process.argv.slice(2);
if (!firmwareDir || files.length === 0) {
  console.error("usage: node run_vectors.mjs FIRMWARE_DIR FILE.py...");
  process.exit(2);
}
const out = [];
const modules = [];
let mp;
try {
  mp = await loadMicroPython({ heapsize: 4 << 20, stdout: (l) => out.push(l), stderr: (l) => console.error(l) });
  for (const dir of ["/boards", "/boards/pole_node", "/pole_node", "/tests", "/tests/micropython"]) mp.FS.mkdir(dir);
  for (const init of ["/boards/__init__.py", "/tests/__init__.py", "/tests/micropython/__init__.py"]) {
    mp.FS.writeFile(init, "");
  }
  for (const file of readdirSync(firmwareDir)) {
    if (file.endsWith(".py") || file.endsWith(".mpy")) {
      mp.FS.writeFile(`/boards/pole_node/${file}`, readFileSync(join(firmwareDir, file)));
      mp.FS.writeFile(`/pole_node/${file}`, readFileSync(join(firmwareDir, file)));
    }
  }
  for (const path of files) {
    const name = basename(path);
    mp.FS.writeFile(name === "machine.py" ? "/machine.py" : `/tests/micropython/${name}`, readFileSync(path));
    if (/^(hw_)?vectors.*\.py$/.test(name)) modules.push(name.slice(0, -3));
  }
} catch (e) {
  console.error(`run_vectors: cannot load MicroPython or the files: ${e}`);
  process.exit(2);
}
mp.globals.set("modules", modules.join(","));
const harness = `
import sys, json
sys.path.insert(0, "/")
passed = failed = 0
for stem in modules.split(","):
    module = __import__("tests.micropython." + stem, None, None, ["x"])
    for name in sorted(dir(module)):
        if not name.startswith("test_"):
            continue
        try:
            getattr(module, name)()
            passed += 1
            print(json.dumps({"name": stem + "." + name, "ok": True, "error": ""}))
        except Exception as e:
            failed += 1
            print(json.dumps({"name": stem + "." + name, "ok": False, "error": "%s: %s" % (type(e).__name__, e)}))
impl = sys.implementation
print(json.dumps({"implementation": "%s %d.%d.%d" % ((impl.name,) + tuple(impl.version[:3])), "passed": passed, "failed": failed}))
`;
let code = 0;
try {
  mp.runPython(harness);
} catch (e) {
  console.error(`run_vectors: the harness failed: ${e.type || ""} ${e.message}`);
  code = 2;
}
for (const line of out) console.log(line);
if (code === 0) {
  const last = out.length ? JSON.parse(out[out.length - 1]) : { failed: 1 };
  code = last.failed === 0 && last.passed > 0 ? 0 : 1;
}
process.exit(code);
