"""REST endpoints of the contract, one module per resource."""
