// htm bound to Preact's h: tagged templates instead of JSX, so the app needs no build step (and no eval).
import { h } from 'preact';
import htm from 'htm';

export const html = htm.bind(h);
