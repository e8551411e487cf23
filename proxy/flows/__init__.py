"""One module per intercepted request's story: login, logout."""
