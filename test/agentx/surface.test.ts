// The library's public surface is agentx/index.ts, kept small as libagentx's
// header is: what it exports, what the rest of the project imports, and the
// internals the type checker keeps out of reach.
import { readdirSync, readFileSync } from 'fs';
import * as path from 'path';
import * as ts from 'typescript';
import * as agentx from '../../agentx';

const ROOT = path.resolve(__dirname, '../..');

/** Imports of agentx/ internals from src/, each with its reason (bench/ and test/ may measure internals). */
const INTERNAL_IMPORTS: Record<string, string[]> = {
  // Frees the packed last-good records at once, as the view's values are; not AgentX.
  'src/collectors/last-good.ts': ['agentx/free-now'],
};

function tsFiles(dir: string): string[] {
  return readdirSync(path.join(ROOT, dir), { withFileTypes: true }).flatMap((entry) => {
    const rel = path.posix.join(dir, entry.name);
    if (entry.isDirectory()) return tsFiles(rel);
    return entry.name.endsWith('.ts') ? [rel] : [];
  });
}

describe('agentx public surface', () => {
  test('the index exports the session, the responder, views and the types they share, nothing more', () => {
    expect(Object.keys(agentx).sort()).toEqual([
      'AgentxNotOpenError',
      'AgentxResponseError',
      'AgentxSession',
      'AgentxTimeoutError',
      'CloseReason',
      'MibView',
      'MibViewBuilder',
      'Responder',
      'ResponseError',
      'TRUTH_FALSE',
      'TRUTH_TRUE',
      'ValueType',
      'compareOids',
      'formatAgentxAddress',
      'formatOid',
      'isPrefixOf',
      'oidEquals',
      'parseAgentxAddress',
      'parseOid',
      'truthValueScalar',
    ]);
  });

  test('src/ imports agentx/ through its index, except the internals listed here', () => {
    const found: Record<string, string[]> = {};
    for (const file of tsFiles('src')) {
      const text = readFileSync(path.join(ROOT, file), 'utf8');
      for (const [, spec] of text.matchAll(/from '([^']*agentx\/[^']+)'/g)) {
        const target = path.posix.relative('.', path.posix.join(path.posix.dirname(file), spec));
        (found[file] ??= []).push(target);
      }
    }
    expect(found).toEqual(INTERNAL_IMPORTS);
  });

  test('internals are out of reach of the type checker', () => {
    // Each line below must fail to compile with the message beside it.
    const lines: [string, string][] = [
      ["import { freeNow } from './agentx';", "has no exported member 'freeNow'"],
      ["import type { TableSink } from './agentx';", "has no exported member 'TableSink'"],
      ["import { encodePdu } from './agentx';", "has no exported member 'encodePdu'"],
      ["import { MibTableBuilder } from './agentx'; new MibTableBuilder(null!, [], []);", "cannot be used as a value"],
      ["import { PackedValues } from './agentx/packed-values'; new PackedValues().count++;", "'count' is private"],
      ["import { MibViewBuilder } from './agentx'; new MibViewBuilder().build().values.count = 0;", "'count' is private"],
      // Views are released by the responder that publishes them, and by nothing else.
      ["import { MibViewBuilder } from './agentx'; new MibViewBuilder().build().release();", "Property 'release' does not exist"],
      ["import { Responder, MibViewBuilder } from './agentx'; new Responder().setView(new MibViewBuilder().build());", "Property 'setView' does not exist"],
    ];
    const snippets = lines.map(([code], i) => ({ name: path.join(ROOT, `__surface_${i}__.ts`), code }));
    const options: ts.CompilerOptions = {
      strict: true,
      target: ts.ScriptTarget.ES2022,
      module: ts.ModuleKind.CommonJS,
      moduleResolution: ts.ModuleResolutionKind.Node10,
      lib: ['lib.es2022.d.ts'],
      types: ['node'],
      typeRoots: [path.join(ROOT, 'node_modules/@types')],
      skipLibCheck: true,
      noEmit: true,
    };
    const host = ts.createCompilerHost(options);
    const virtual = new Map(snippets.map((s) => [s.name, s.code]));
    const { getSourceFile, fileExists, readFile } = host;
    host.getSourceFile = (name, language, ...rest) => {
      const code = virtual.get(name);
      return code !== undefined ? ts.createSourceFile(name, code, language) : getSourceFile.call(host, name, language, ...rest);
    };
    host.fileExists = (name) => virtual.has(name) || fileExists.call(host, name);
    host.readFile = (name) => virtual.get(name) ?? readFile.call(host, name);
    const program = ts.createProgram(snippets.map((s) => s.name), options, host);
    const errors = (name: string): string[] => ts.getPreEmitDiagnostics(program, program.getSourceFile(name))
      .map((d) => ts.flattenDiagnosticMessageText(d.messageText, ' '));
    for (const [i, [code, expected]] of lines.entries()) {
      expect({ code, errors: errors(snippets[i].name) }).toEqual({ code, errors: [expect.stringContaining(expected)] });
    }
  });
});
