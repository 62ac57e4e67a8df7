/**
 * The new-conversation form's sandbox choice: filled from the server's `GET capabilities`
 * (no kind is written into the front end).
 */
import { NewConversationForm } from '../widgets/form';

function makeForm(sandbox = ''): NewConversationForm {
  return new NewConversationForm({
    defaults: { model: '', sandbox, confirmationMode: false },
    onSubmit: async () => undefined,
    onCancel: () => undefined,
    currentFolder: () => ''
  });
}

function select(form: NewConversationForm): HTMLSelectElement {
  return form.node.querySelector('select[name="sandbox"]') as HTMLSelectElement;
}

const offered = [
  {
    kind: 'process',
    description: 'a local subprocess',
    available: true,
    reason: null
  },
  {
    kind: 'docker',
    description: 'a container',
    available: false,
    reason: "this server runs 'process' runtimes"
  }
];

describe('NewConversationForm sandboxes', () => {
  it('offers only the server default until the server answers', () => {
    const form = makeForm('process');
    const options = Array.from(select(form).options).map(o => o.value);
    expect(options).toEqual(['']);
    expect(form.request().sandbox).toBeUndefined();
  });

  it('lists the kinds the server offers, unavailable ones disabled', () => {
    const form = makeForm('process');
    form.setSandboxes(offered, 'process');
    const options = Array.from(select(form).options);
    expect(options.map(o => o.value)).toEqual(['', 'process', 'docker']);
    expect(options[0].textContent).toBe('Server default (process)');
    expect(options[2].disabled).toBe(true);
    expect(options[2].title).toContain("runs 'process'");
    // The settings' default is kept once it is offered.
    expect(form.request().sandbox).toBe('process');
  });

  it('falls back to the server default for a kind it cannot run', () => {
    const form = makeForm('docker');
    form.setSandboxes(offered, 'process');
    expect(select(form).value).toBe('');
    expect(form.request().sandbox).toBeUndefined();
  });
});
