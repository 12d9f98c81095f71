def render(cfg, dialect):
    return {}
