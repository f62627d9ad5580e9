"""WeCom customer contact: friend relations, channels (contact ways), tags, welcome messages,
lost-customer alerts, handover and behaviour data (issue 3)."""
