import { del, get } from '../api.js';
import { copyText, h, humanBytes, humanDate, replace } from '../dom.js';
import { uploadFile } from '../upload.js';
import { act, confirmDialog, say, sayError, table, turns } from '../ui.js';

const fileUrl = (ns, name) => `/storage/${encodeURIComponent(ns)}/${encodeURIComponent(name)}`;

export default async function filesPage(main) {
  const namespace = new URLSearchParams(location.search).get('namespace') || 'default';
  document.title = `${namespace} · Files · Appliance`;
  const list = h('div', { id: 'files' });
  const uploads = h('ul', { id: 'uploads', class: 'uploads', 'aria-label': 'Uploads' });
  const picker = h('input', { type: 'file', multiple: true, id: 'file-input', class: 'offscreen' });
  const overwrite = h('input', { type: 'checkbox', id: 'overwrite' });
  const drop = h('div', { id: 'drop-zone', class: 'drop' },
    h('p', {}, 'Drop files here, or '),
    h('label', { for: 'file-input', class: 'button', tabindex: '0', role: 'button',
      onkeydown: (e) => { if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); picker.click(); } } }, 'Choose files'),
    picker,
    h('div', { class: 'check' }, overwrite, h('label', { for: 'overwrite' }, 'Replace files of the same name')));
  replace(main, h('h1', { tabindex: '-1' }, `Files in ${namespace}`),
    h('p', {}, h('a', { href: '/storage/namespaces', 'data-page': '' }, '← All namespaces')), drop, uploads, list);

  const turn = turns();
  const draw = async () => {
    const current = turn();
    let files = [];
    try { files = await get(`/storage/files?namespace=${encodeURIComponent(namespace)}`); } catch (error) { sayError(error); }
    if (!current()) return;   // uploads ended again meanwhile: that draw shows the newer list
    replace(list, table(['Name', 'Size', 'Modified', 'Actions'], files.map((f) => {
      const url = fileUrl(namespace, f.name);
      const copy = h('button', { type: 'button', class: 'secondary', 'aria-label': `Copy link to ${f.name}`,
        onclick: () => copyText(new URL(url, location.href).toString(), copy) }, 'Copy link');
      const remove = h('button', { type: 'button', class: 'danger', 'aria-label': `Delete ${f.name}`, onclick: async () => {
        if (!(await confirmDialog(`Delete ${f.name}?`))) return;
        const q = `namespace=${encodeURIComponent(namespace)}&name=${encodeURIComponent(f.name)}`;
        if (await act(remove, 'Deleting…', () => del(`/storage/delete?${q}`), `${f.name} deleted.`)) draw();
      } }, 'Delete');
      return h('tr', { 'data-name': f.name },
        h('td', {}, h('a', { href: url, download: f.name }, f.name)),
        h('td', { title: `${f.size} bytes` }, humanBytes(f.size)), h('td', {}, humanDate(f.modified_at || f.created_at)),
        h('td', {}, h('div', { class: 'actions' }, copy, remove)));
    }), 'No files yet.'));
  };

  const send = async (files) => {
    const jobs = [...files].map(async (file) => {
      const bar = h('progress', { max: file.size || 1, value: 0, 'aria-label': `Uploading ${file.name}` });
      const note = h('span', { class: 'note' }, `0 of ${humanBytes(file.size)}`);
      const item = h('li', { 'data-name': file.name }, h('span', { class: 'name' }, file.name), bar, note);
      uploads.append(item);
      try {
        await uploadFile(namespace, file, (sent, total) => {
          bar.max = total || 1;
          bar.value = sent;
          note.textContent = `${humanBytes(sent)} of ${humanBytes(total)}`;
        }, { overwrite: overwrite.checked });
        bar.value = bar.max;
        note.textContent = `${humanBytes(file.size)} uploaded`;
        item.classList.add('done');
        return true;
      } catch (error) {
        note.textContent = error.message;
        item.classList.add('failed');
        return false;
      }
    });
    if (!jobs.length) return;
    say(`Uploading ${jobs.length} file${jobs.length > 1 ? 's' : ''}…`, 'busy');
    const ok = (await Promise.all(jobs)).filter(Boolean).length;
    say(`${ok} of ${jobs.length} uploaded.`, ok === jobs.length ? 'ok' : 'error');
    draw();
  };
  picker.addEventListener('change', () => { send(picker.files); picker.value = ''; });
  drop.addEventListener('dragover', (e) => { e.preventDefault(); drop.classList.add('over'); });
  drop.addEventListener('dragleave', () => drop.classList.remove('over'));
  drop.addEventListener('drop', (e) => { e.preventDefault(); drop.classList.remove('over'); send(e.dataTransfer.files); });
  await draw();
}
