// npm run package (issue 15): stub, being written.
console.error('npm run package: not written yet');
process.exit(1);
