"""pandera schemas of the unit's sheets and the rule catalog (the leaf of the import graph)."""
