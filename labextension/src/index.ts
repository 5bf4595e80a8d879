/**
 * CodeCapsule's JupyterLab extension: a cell that starts with `%%capsule LANG` is highlighted (and completed,
 * where JupyterLab's language support has completion) as LANG instead of Python.
 *
 * How: one editor extension, added to every CodeMirror 6 editor through JupyterLab's editor extension registry.
 * A view plugin reads the cell's first line; when it names a language, the language's support from JupyterLab's
 * own language registry is put into a compartment at the highest precedence, so it replaces the cell's IPython
 * language for that editor only. The language's parser sees the `%%capsule ...` line as blank (same length, so
 * every position stays the same): the program is parsed from its own first line, as the engine compiles it.
 * The magic line itself is marked with a class (style/index.css colours it). Tokens also get CodeMirror's
 * stable `tok-*` classes (classHighlighter), next to the theme's colours.
 */

import { JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import {
  EditorExtensionRegistry,
  IEditorExtensionRegistry,
  IEditorLanguageRegistry
} from '@jupyterlab/codemirror';
import { Language, LanguageSupport, syntaxHighlighting } from '@codemirror/language';
import { Compartment, EditorState, Extension, Prec, RangeSetBuilder } from '@codemirror/state';
import { Decoration, DecorationSet, EditorView, ViewPlugin, ViewUpdate } from '@codemirror/view';
import { Input, Parser, PartialParse, TreeFragment } from '@lezer/common';
import { classHighlighter } from '@lezer/highlight';

import table from './languages.json';

const PLUGIN_ID = 'codecapsule-labextension:capsule-cells';
const MAGIC = /^(%%capsule)[ \t]+(\S+)/;
const LANGUAGES: Record<string, string> = table.languages;

/** The editor language a `%%capsule` first line asks for, or null (not a capsule cell, unknown language). */
export function capsuleLanguage(firstLine: string): string | null {
  const m = MAGIC.exec(firstLine);
  return m ? LANGUAGES[m[2].toLowerCase()] ?? null : null;
}

/** The document as the language's parser should see it: the first `maskEnd` characters read as spaces. */
class MaskedInput implements Input {
  constructor(
    private readonly inner: Input,
    private readonly maskEnd: number
  ) {}

  get length(): number {
    return this.inner.length;
  }

  get lineChunks(): boolean {
    return this.inner.lineChunks;
  }

  chunk(from: number): string {
    return from < this.maskEnd ? ' '.repeat(this.maskEnd - from) : this.inner.chunk(from);
  }

  read(from: number, to: number): string {
    if (from >= this.maskEnd) {
      return this.inner.read(from, to);
    }
    const blank = ' '.repeat(Math.min(to, this.maskEnd) - from);
    return to <= this.maskEnd ? blank : blank + this.inner.read(this.maskEnd, to);
  }
}

/** A parser that parses a cell's program, not its `%%capsule` line. */
class SkipMagicLine extends Parser {
  constructor(private readonly inner: Parser) {
    super();
  }

  createParse(
    input: Input,
    fragments: readonly TreeFragment[],
    ranges: readonly { from: number; to: number }[]
  ): PartialParse {
    const head = input.read(0, Math.min(input.length, 4096));
    const newline = head.indexOf('\n');
    const maskEnd = newline < 0 ? head.length : newline;
    return this.inner.createParse(new MaskedInput(input, maskEnd), fragments, ranges);
  }
}

function cellLanguage(support: LanguageSupport): Extension {
  const inner = support.language;
  const language = new Language(inner.data, new SkipMagicLine(inner.parser), [], inner.name);
  return Prec.highest([new LanguageSupport(language, support.support), syntaxHighlighting(classHighlighter)]);
}

const magicMark = Decoration.mark({ class: 'cc-capsule-magic' });

function magicDecorations(state: EditorState): DecorationSet {
  const builder = new RangeSetBuilder<Decoration>();
  const m = MAGIC.exec(state.doc.line(1).text);
  if (m) {
    builder.add(0, m[0].length, magicMark);
  }
  return builder.finish();
}

/** The editor extension: a compartment holding the cell's language, and the plugin that fills it. */
function capsuleCells(languages: IEditorLanguageRegistry): Extension {
  const compartment = new Compartment();
  const loaded = new Map<string, Promise<Extension>>();

  function load(name: string): Promise<Extension> {
    let found = loaded.get(name);
    if (found === undefined) {
      const spec = languages.findByName(name) ?? languages.findBest(name);
      found = (spec ? languages.getLanguage(spec) : Promise.resolve(null)).then(language =>
        language?.support ? cellLanguage(language.support) : []
      );
      loaded.set(name, found);
    }
    return found;
  }

  const plugin = ViewPlugin.fromClass(
    class {
      decorations: DecorationSet;
      private wanted: string | null = null;
      private generation = 0;
      private destroyed = false;

      constructor(readonly view: EditorView) {
        this.decorations = magicDecorations(view.state);
        this.follow(view.state);
      }

      update(update: ViewUpdate): void {
        if (update.docChanged) {
          this.decorations = magicDecorations(update.state);
          this.follow(update.state);
        }
      }

      destroy(): void {
        this.destroyed = true;
      }

      /** Load the first line's language (asynchronously: no dispatch may happen inside an update). */
      private follow(state: EditorState): void {
        const wanted = capsuleLanguage(state.doc.line(1).text);
        if (wanted === this.wanted) {
          return;
        }
        this.wanted = wanted;
        const generation = ++this.generation;
        const extension = wanted === null ? Promise.resolve<Extension>([]) : load(wanted);
        extension
          .then(ext => {
            if (!this.destroyed && generation === this.generation) {
              this.view.dispatch({ effects: compartment.reconfigure(ext) });
            }
          })
          .catch(reason => console.warn(`codecapsule: no highlighting for %%capsule ${wanted}`, reason));
      }
    },
    { decorations: plugin => plugin.decorations }
  );

  return [compartment.of([]), plugin];
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: PLUGIN_ID,
  description: 'Highlights a %%capsule LANG cell as LANG.',
  autoStart: true,
  requires: [IEditorExtensionRegistry, IEditorLanguageRegistry],
  activate: (
    _app: JupyterFrontEnd,
    extensions: IEditorExtensionRegistry,
    languages: IEditorLanguageRegistry
  ): void => {
    const extension = capsuleCells(languages);
    extensions.addExtension({
      name: 'codecapsule:capsule-cells',
      factory: () => EditorExtensionRegistry.createImmutableExtension(extension)
    });
  }
};

export default plugin;
