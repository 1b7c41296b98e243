from twisted.application.service import ServiceMaker

resgate = ServiceMaker(
    "resgate", "resgate.tap", "Realtime API gateway for the RES protocol over NATS", "resgate"
)
