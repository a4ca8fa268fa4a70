def sniff(member, head, options, fmt):
    return None


def parse(member, det, options, sink):
    raise NotImplementedError
