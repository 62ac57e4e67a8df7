import { LabIcon } from '@jupyterlab/ui-components';

/** Two speech bubbles: the panel's tab icon (coloured by the theme). */
const CONVO_SVG = `<svg xmlns="http://www.w3.org/2000/svg" width="16" height="16" viewBox="0 0 24 24">
  <g class="jp-icon3" fill="#616161">
    <path d="M4 3h11a2 2 0 0 1 2 2v6a2 2 0 0 1-2 2H9l-4 3.5V13H4a2 2 0 0 1-2-2V5a2 2 0 0 1 2-2z"/>
    <path d="M19 8h1a2 2 0 0 1 2 2v6a2 2 0 0 1-2 2h-1v3l-3.5-3H11a2 2 0 0 1-2-2v-1h6a4 4 0 0 0 4-4z"/>
  </g>
</svg>`;

export const convoIcon = new LabIcon({
  name: 'jupyter-convo:convo',
  svgstr: CONVO_SVG
});
