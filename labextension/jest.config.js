const jestJupyterLab = require('@jupyterlab/testing/lib/jest-config');

// Packages shipped as ES modules that Jest must transform.
const esModules = [
  '@codemirror',
  '@jupyter/',
  '@microsoft/',
  '@jupyterlab/',
  'lib0',
  'marked',
  'nanoid',
  'y-protocols',
  'yjs'
].join('|');

const baseConfig = jestJupyterLab(__dirname);

module.exports = {
  ...baseConfig,
  automock: false,
  collectCoverageFrom: [
    'src/models/*.ts',
    'src/render/*.ts',
    'src/widget/*.ts'
  ],
  coverageReporters: ['lcov', 'text-summary'],
  reporters: ['default'],
  testRegex: 'src/.*/.*.spec.ts[x]?$',
  transformIgnorePatterns: [`/node_modules/(?!${esModules}).*`]
};
