// The Share button: a link to the selected pixel and the area in view (link.js's form,
// fitted to the opener's screen), copied to the clipboard with a toast. On a phone the
// system's share sheet is offered instead, when the browser has one.

/**
 * @param {HTMLButtonElement} button
 * @param {() => string} link  the link to share, made at the click
 * @param {(message: string, kind?: string) => void} toast
 */
export function attachShare(button, link, toast) {
  button.addEventListener('click', async () => {
    const url = link();
    const phone = matchMedia('(pointer: coarse)').matches;
    if (phone && typeof navigator.share === 'function') {
      try {
        await navigator.share({ title: document.title, url });
        return;
      } catch (err) {
        if (err?.name === 'AbortError') return; // closed the sheet: nothing to say
      }
    }
    try {
      await navigator.clipboard.writeText(url);
      toast('Link copied: it opens this pixel and this view');
    } catch {
      // No clipboard (an insecure origin, or refused): the link itself, to copy by hand.
      toast(`Share this link: ${url}`, 'info', 12_000);
    }
  });
}
