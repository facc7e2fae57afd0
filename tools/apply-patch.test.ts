/**
 * The strict patch applier the FerretDB build uses (tools/apply-patch.ts): it applies what `patch -p1`
 * applies, and refuses, without writing anything, a patch that does not fit the files exactly.
 */
import { mkdtempSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { applyPatch, parsePatch, PatchError } from './apply-patch';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'ck-apply-patch-'));
  mkdirSync(join(dir, 'pkg'));
  const go = ['package pkg', '', 'const A = 1', '', 'func f() {}', '', 'func g() {}', ''];
  writeFileSync(join(dir, 'pkg/a.go'), go.join('\n'));
  writeFileSync(join(dir, 'b.txt'), 'one\ntwo'); // no newline at the end
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const PATCH = `Some explanation first; it is not part of any file.

--- a/pkg/a.go\t2024-01-01 00:00:00
+++ b/pkg/a.go\t2024-01-01 00:00:00
@@ -1,3 +1,4 @@
 package pkg
 
+// A is one.
 const A = 1
@@ -5,3 +6,3 @@
 func f() {}
 
-func g() {}
+func g() { f() }
--- a/b.txt
+++ b/b.txt
@@ -1,2 +1,2 @@
 one
-two
\\ No newline at end of file
+two
`;

it('applies every hunk and reports the files it changed', () => {
  expect(applyPatch(dir, PATCH)).toEqual([join(dir, 'pkg/a.go'), join(dir, 'b.txt')]);
  expect(readFileSync(join(dir, 'pkg/a.go'), 'utf8')).toBe(
    ['package pkg', '', '// A is one.', 'const A = 1', '', 'func f() {}', '', 'func g() { f() }', ''].join('\n'),
  );
  expect(readFileSync(join(dir, 'b.txt'), 'utf8')).toBe('one\ntwo\n');
});

it('writes nothing when a hunk does not match, and says the patch is for another version', () => {
  writeFileSync(join(dir, 'b.txt'), 'one\nTWO');
  expect(() => applyPatch(dir, PATCH)).toThrow(/hunk 1 of b\.txt does not match .*another version/);
  expect(readFileSync(join(dir, 'pkg/a.go'), 'utf8')).not.toMatch(/A is one/);
});

it('refuses what it does not support instead of guessing', () => {
  expect(() => parsePatch('--- /dev/null\n+++ b/new.go\n@@ -0,0 +1 @@\n+x\n')).toThrow(PatchError);
  expect(() => parsePatch('just words')).toThrow(/no file changes/);
  expect(() => parsePatch('--- a/x\n+++ b/x\n@@ -1,2 +1,2 @@\n a\n')).toThrow(/ends early/);
});

it("parses credit-kit's FerretDB patch", () => {
  const text = readFileSync(join(__dirname, 'mongo/ferretdb-sqlite-index.patch'), 'utf8');
  expect(parsePatch(text).map((f) => f.path)).toEqual([
    'internal/backends/sqlite/collection.go',
    'internal/backends/sqlite/metadata/metadata.go',
    'internal/backends/sqlite/query.go',
  ]);
});
