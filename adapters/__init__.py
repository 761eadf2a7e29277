"""Everything that touches the outside: the inbox, workbooks, the warehouse, the national system."""
