// The console's own progressive enhancement (plain JavaScript, no build): a "Copy" button
// beside a secret shown once (a new token). Without JavaScript, or where the browser offers no
// clipboard (plain HTTP to a non-local address), the secret is still selectable text.
/* global document, navigator */
'use strict';

document.addEventListener('DOMContentLoaded', () => {
  if (!navigator.clipboard || typeof navigator.clipboard.writeText !== 'function') return;
  for (const target of document.querySelectorAll('[data-copy]')) {
    const button = document.createElement('button');
    button.type = 'button';
    button.className = 'secondary';
    button.textContent = 'Copy';
    const status = document.createElement('span');
    status.setAttribute('role', 'status');
    status.className = 'muted';
    button.addEventListener('click', () => {
      navigator.clipboard.writeText(target.textContent.trim()).then(
        () => { status.textContent = ' Copied.'; },
        () => { status.textContent = ' Copying failed: select the text instead.'; },
      );
    });
    const p = document.createElement('p');
    p.append(button, status);
    target.after(p);
  }
});
