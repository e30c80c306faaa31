/** generated/README.md via handlebars (noEscape, strict). */
import type { ModelIR, OptionIR, EnvIR } from '../model.js';
import { MD_HEADER } from '../paths.js';

type Handlebars = typeof import('handlebars');

const cell = (s: string) => s.replace(/\|/g, '\\|').replace(/\n+/g, ' ');

export function emitDocs(model: ModelIR, hb: Handlebars, template: string): string {
  const h = hb.create();
  h.registerHelper('yesno', (v: boolean) => (v ? 'yes' : 'no'));
  h.registerHelper('cell', (s: string) => cell(s));
  h.registerHelper('defaultText', (o: OptionIR) => (o.required ? 'required' : o.secret ? '(secret)' : o.hasDefault ? `\`${JSON.stringify(o.default)}\`` : '—'));
  h.registerHelper('envText', (env: EnvIR[]) =>
    env.length === 0 ? '—' : env.map((e) => `\`${e.var}\` (${e.parse}${e.overrides ? ', overrides option' : ''})`).join(', '),
  );
  const render = h.compile(template, { noEscape: true, strict: true });
  const view = {
    header: MD_HEADER,
    specHash: model.specHash,
    base: model.base,
    backends: model.backends.map((b) => ({
      ...b,
      logRules: Object.entries(b.valueRules.log).map(([kind, r]) => ({ kind, ...r })),
      configRules: Object.entries(b.valueRules.storeInitConfiguration).map(([kind, r]) => ({ kind, ...r })),
    })),
  };
  return render(view).replace(/\n{3,}/g, '\n\n');
}
