// Uploads a File with XMLHttpRequest: the browser streams the File from disk as
// the body (PUT /storage/{namespace}/{name}), so a 1 GiB file is never read into
// the page's memory; upload.onprogress drives the progress bar.
import { errorOf, session } from './api.js';

export function uploadFile(namespace, file, onProgress, { overwrite = false } = {}) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    const path = `/storage/${encodeURIComponent(namespace)}/${encodeURIComponent(file.name)}${overwrite ? '?overwrite=true' : ''}`;
    xhr.open('PUT', path);
    xhr.setRequestHeader('Authorization', `Bearer ${session.token()}`);
    xhr.setRequestHeader('Content-Type', 'application/octet-stream');
    xhr.upload.onprogress = (e) => onProgress(e.loaded, e.lengthComputable ? e.total : file.size);
    xhr.onerror = () => reject(new Error('the upload was cut off'));
    xhr.onload = async () => {
      if (xhr.status >= 200 && xhr.status < 300) { resolve(JSON.parse(xhr.responseText)); return; }
      const response = new Response(xhr.responseText, { status: xhr.status,
        headers: { 'Retry-After': xhr.getResponseHeader('Retry-After') || '' } });
      reject(await errorOf(response));
    };
    xhr.send(file);
  });
}
