"""One router per resource; routes only parse, call the model or index, and build the schema."""
